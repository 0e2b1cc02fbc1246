// Every route an Express 5 app serves, read from its router stack: what tests hold a list of routes to.

export type Layer = {
  rawPath?: string | string[];
  route?: { path: string | RegExp | (string | RegExp)[]; methods: Record<string, boolean> };
  handle?: { stack?: Layer[] };
};

/** Every route of a router with its mount path, as `METHOD /path` (the dashboard's `/api` twin folded in; no HEAD). */
export function appRoutes(stack: readonly Layer[], prefix = ''): Set<string> {
  const found = new Set<string>();
  const join = (path: string) => (path === '/' ? prefix : `${prefix}${path}`);
  for (const layer of stack) {
    if (layer.route) {
      // A path written as a pattern (`/^\/tenants:import$/`) is named by what it matches.
      const paths = [layer.route.path]
        .flat()
        .map((path: string | RegExp) =>
          typeof path === 'string' ? path : path.source.replace(/^\^|\$$/g, '').replace(/\\\//g, '/'),
        );
      for (const method of Object.keys(layer.route.methods)) {
        if (['head', 'options', '_all'].includes(method)) continue;
        for (const path of paths)
          found.add(`${method.toUpperCase()} ${join(path)}`.replace('/dashboard/api/', '/dashboard/'));
      }
    } else if (Array.isArray(layer.handle?.stack)) {
      const mounts = layer.rawPath === undefined ? ['/'] : [layer.rawPath].flat();
      for (const mount of mounts) for (const route of appRoutes(layer.handle.stack, join(mount))) found.add(route);
    }
  }
  return found;
}
