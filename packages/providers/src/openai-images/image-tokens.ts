// The output tokens of one gpt-image image by quality and size: OpenAI's table, the bound an image call reserves.

/**
 * Image tokens of one image, by quality, for the sizes OpenAI lists (square, portrait, landscape): the image
 * generation guide's "Cost and latency" table for gpt-image-1.
 */
const TOKENS: Readonly<Record<string, Readonly<Record<string, number>>>> = {
  low: { '1024x1024': 272, '1024x1536': 408, '1536x1024': 400 },
  medium: { '1024x1024': 1056, '1024x1536': 1584, '1536x1024': 1568 },
  high: { '1024x1024': 4160, '1024x1536': 6240, '1536x1024': 6208 },
};
/** The dearest listed image (high, portrait) and its pixels: a size the table does not list is scaled from it. */
const DEAREST = { tokens: 6240, pixels: 1024 * 1536 };
/** Tokens each partial image of a stream adds (the guide: "Each partial image adds 100 image output tokens"). */
const PARTIAL_IMAGE_TOKENS = 100;

const SIZE = /^(\d{2,5})x(\d{2,5})$/;

/**
 * The output tokens one image may cost at `quality` and `size`: the table's count; `auto` (or a quality it does not
 * list) its dearest of the size; a size it does not list, the dearest scaled by pixels (at least the dearest listed),
 * `auto` the dearest. Plus the stream's partial images.
 */
export function imageOutputTokens(quality: string, size: string, partialImages = 0): number {
  const byQuality = TOKENS[quality];
  const listed = byQuality?.[size] ?? Math.max(...Object.values(TOKENS).map((sizes) => sizes[size] ?? 0));
  const match = SIZE.exec(size);
  const scaled = match
    ? Math.ceil((Number(match[1]) * Number(match[2]) * DEAREST.tokens) / DEAREST.pixels)
    : DEAREST.tokens;
  const tokens = listed > 0 ? listed : Math.max(scaled, DEAREST.tokens);
  return tokens + partialImages * PARTIAL_IMAGE_TOKENS;
}
