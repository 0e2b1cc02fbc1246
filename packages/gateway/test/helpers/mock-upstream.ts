// The built-in mock named as a config's upstream, on purpose: what a config that names no provider must say.
export const WITH_MOCK = { upstreams: { mock: { kind: 'mock' as const } } };
