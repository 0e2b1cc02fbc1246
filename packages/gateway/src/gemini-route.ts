// The mock provider's import of Gemini's path split, until the mock moves beside the adapters (the split is theirs).
export { splitGeminiTarget } from '@tollgate/providers/kit';
