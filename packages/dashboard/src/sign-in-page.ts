// The sign-in form: the only page a browser without a session sees, and it shows no data.
import { html } from './html.js';
import type { SafeHtml } from './html.js';

interface SignInView {
  base: string;
  title: string;
  /** The token the form posts back, matched against the sign-in cookie (no one else can post this form for you). */
  formToken: string;
  /** Where to go after signing in. */
  next?: string;
  error?: string;
  /** The app's own sign-in (OIDC), offered beside the key. */
  operatorSignIn?: { label: string; href: string };
}

export function renderSignIn(view: SignInView): string {
  const error: SafeHtml | string = view.error
    ? html`<p class="error" role="alert" id="sign-in-error">${view.error}</p>`
    : '';
  const single = view.operatorSignIn;
  const singleSignOn: SafeHtml | string = single
    ? html`<p class="card"><a class="button" id="single-sign-on" href="${single.href}?next=${encodeURIComponent(view.next ?? `${view.base}/`)}">${single.label}</a></p>`
    : '';
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="same-origin">
<link rel="icon" href="data:,">
<title>Sign in · ${view.title}</title>
<link rel="stylesheet" href="${view.base}/assets/dashboard.css">
</head>
<body class="sign-in">
<main id="main">
<h1>${view.title}</h1>
${singleSignOn}
<form method="post" action="${view.base}/login" class="card">
  <h2>Sign in</h2>
  ${error}
  <input type="hidden" name="_csrf" value="${view.formToken}">
  ${view.next ? html`<input type="hidden" name="next" value="${view.next}">` : ''}
  <label for="admin-key">Admin key</label>
  <input id="admin-key" name="key" type="password" required autocomplete="current-password" spellcheck="false" autofocus${view.error ? html` aria-describedby="sign-in-error" aria-invalid="true"` : ''}>
  <button type="submit">Sign in</button>
  <p class="hint">The key is checked and forgotten: the browser keeps only a session cookie. Scripts send the key as <code>Authorization: Bearer</code> instead.</p>
</form>
</main>
</body>
</html>`.value;
}
