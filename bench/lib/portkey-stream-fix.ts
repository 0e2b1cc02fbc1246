// A module hook for the Portkey gateway's process (see portkey.ts): patches its streamed answers in memory, never on disk.
//
// On Node, @hono/node-server replaces the global Response with a lightweight one that, built from the upstream's
// fetch Response (`new Response(stream, upstream)`), keeps the upstream's immutable Headers object as its own. The
// gateway then appends its x-portkey-* headers to it and every streamed request fails with a 500 ("TypeError:
// immutable"). The one change: its stream wrapper builds the new Response with a copy of those headers.
import type { LoadHook } from 'node:module';

const GATEWAY_FILE = /\/@portkey-ai\/gateway\/build\/start-server\.js$/;
/** The stream wrapper's last statement in the gateway's build, as @portkey-ai/gateway 1.15.2 ships it. */
const STREAM_RESPONSE = 'new Response(p,e)}const Ad=';
const STREAM_RESPONSE_FIXED =
  'new Response(p,{status:e.status,statusText:e.statusText,headers:new Headers(e.headers)})}const Ad=';

/** Printed once the gateway has started with the patch: the bench waits for it. */
export const PATCH_MARK = 'tollgate bench: Portkey stream headers patched';

export const load: LoadHook = async (url, context, nextLoad) => {
  const loaded = await nextLoad(url, context);
  if (!GATEWAY_FILE.test(url)) return loaded;
  const source =
    typeof loaded.source === 'string'
      ? loaded.source
      : new TextDecoder().decode(loaded.source as ArrayBuffer | Uint8Array);
  // Another version of the gateway would need another patch: refuse to start rather than measure something else.
  if (source.split(STREAM_RESPONSE).length !== 2)
    throw new Error(`Portkey gateway patch: the stream wrapper is not found once in ${url}`);
  return {
    ...loaded,
    source: `${source.replace(STREAM_RESPONSE, STREAM_RESPONSE_FIXED)}\nconsole.log(${JSON.stringify(PATCH_MARK)});\n`,
  };
};
