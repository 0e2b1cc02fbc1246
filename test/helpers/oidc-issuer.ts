// A real OpenID Connect provider (panva's oidc-provider) on its own port, with accounts whose roles are a claim.
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import Provider from 'oidc-provider';
import { closeServer, listen } from './proxy.js';

export interface TestAccount {
  /** What is typed in the provider's login form; also the account's `sub`. */
  login: string;
  email: string;
  roles: string[];
  tenants?: string[];
}

export interface TestClient {
  clientId: string;
  clientSecret: string;
  redirectUri: string;
}

export interface RunningIssuer {
  url: string;
  /** Starts answering as the provider of these accounts and this client (whose redirect URI is known by then). */
  serve(accounts: readonly TestAccount[], client: TestClient): void;
  close(): Promise<void>;
}

/**
 * A port for the provider, and then the provider with its development login and consent pages (any password signs an
 * account in), PKCE required, and the `roles` and `tenants` claims in the ID token (the `roles` scope asks for them).
 */
export async function openOidcIssuer(): Promise<RunningIssuer> {
  const server: Server = createServer();
  const url = await listen(server.listen(0, '127.0.0.1'));
  return {
    url,
    serve: (accounts, client) => serveProvider(server, url, accounts, client),
    close: () => closeServer(server),
  };
}

function serveProvider(server: Server, url: string, accounts: readonly TestAccount[], client: TestClient): void {
  const provider = new Provider(url, {
    clients: [
      {
        client_id: client.clientId,
        client_secret: client.clientSecret,
        redirect_uris: [client.redirectUri],
        grant_types: ['authorization_code'],
        response_types: ['code'],
      },
    ],
    pkce: { required: () => true },
    claims: { openid: ['sub'], email: ['email'], roles: ['roles', 'tenants'] },
    scopes: ['openid', 'email', 'roles'],
    conformIdTokenClaims: false,
    cookies: { keys: ['tollgate-test-issuer-cookies'] },
    async findAccount(_ctx, id) {
      const account = accounts.find((candidate) => candidate.login === id);
      if (!account) return undefined;
      return {
        accountId: id,
        claims: async () => ({
          sub: id,
          email: account.email,
          roles: account.roles,
          ...(account.tenants ? { tenants: account.tenants } : {}),
        }),
      };
    },
  });
  server.on('request', provider.callback());
}

/** One client's cookies, by name (the gateway and the provider share a host; their cookie names differ). */
export class CookieJar {
  readonly cookies = new Map<string, string>();

  header(): string {
    return [...this.cookies].map(([name, value]) => `${name}=${value}`).join('; ');
  }

  take(response: Response): void {
    for (const line of response.headers.getSetCookie()) {
      const [pair, ...attributes] = line.split(';');
      const at = pair!.indexOf('=');
      const name = pair!.slice(0, at).trim();
      const value = pair!.slice(at + 1).trim();
      const gone = attributes.some((attribute) => /^\s*(max-age=0|expires=thu, 01 jan 1970)/i.test(attribute));
      if (gone || value === '') this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
  }
}

/** The first form of a page: where it posts and its fields (the provider's login and consent pages). */
function formOf(html: string, base: string): { action: string; fields: Record<string, string> } | undefined {
  const form = /<form[^>]*action="([^"]+)"[^>]*>([\s\S]*?)<\/form>/i.exec(html);
  if (!form) return undefined;
  const fields: Record<string, string> = {};
  for (const input of form[2]!.matchAll(/<input[^>]*>/gi)) {
    const name = /name="([^"]+)"/.exec(input[0])?.[1];
    if (name) fields[name] = /value="([^"]*)"/.exec(input[0])?.[1] ?? '';
  }
  return { action: new URL(form[1]!.replace(/&amp;/g, '&'), base).href, fields };
}

/**
 * Goes where a browser would from `start`: follows redirects and submits the provider's forms (the login with
 * `login`), until `stop` says a URL is not to be requested (returned) or a page has no form (its response returned).
 */
export async function browse(
  jar: CookieJar,
  start: string,
  login: string,
  stop: (url: URL) => boolean = () => false,
): Promise<{ url: string; response?: Response }> {
  let url = start;
  let init: RequestInit = {};
  for (let hop = 0; hop < 20; hop++) {
    if (stop(new URL(url))) return { url };
    const response = await fetch(url, {
      ...init,
      redirect: 'manual',
      headers: { ...(init.headers as Record<string, string>), cookie: jar.header() },
    });
    jar.take(response);
    const location = response.headers.get('location');
    if (response.status >= 300 && response.status < 400 && location) {
      url = new URL(location, url).href;
      init = {};
      continue;
    }
    const text = response.status === 200 ? await response.clone().text() : '';
    const form = formOf(text, url);
    // Only the provider's pages are filled in; a page of the gateway is where the walk ends.
    if (!form || new URL(url).origin === new URL(start).origin) return { url, response };
    const fields = 'login' in form.fields ? { ...form.fields, login, password: 'any password' } : form.fields;
    url = form.action;
    init = {
      method: 'POST',
      body: new URLSearchParams(fields).toString(),
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    };
  }
  throw new Error(`browse: more than 20 hops from ${start}`);
}
