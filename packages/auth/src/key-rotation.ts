// One key rotation, the same at every door (the `keys` command, /admin/keys, the dashboard): one atomic change that adds
// the successor (a new secret, the old key's attributes and budget scope) and ends the old key as the grace says.
import { randomBytes } from 'node:crypto';
import type { ApiKeyRecord, KeyChange, KeyChangeOutcome } from '@tollgate/core/store-contracts';
import { generateApiKey, hashApiKey } from './api-keys.js';
import { predecessorAfterRotation, successorRecord } from './key-terms.js';
import type { RotationGrace } from './key-terms.js';

/** Changes one key in one atomic step: `changeKey` over a KeyStore, or a config file's locked edit. */
export type ChangeOneKey = (
  id: string,
  decide: (record: ApiKeyRecord) => KeyChange | undefined,
) => Promise<KeyChangeOutcome>;

/** What a rotation is asked to do, read from the person's terms before anything is stored. */
export interface RotationTerms {
  /** What becomes of the old key (`rotationGrace`). */
  grace: RotationGrace;
  /** The successor's end date; the old key's when absent (`keyExpiry`). */
  expiresAt?: string | undefined;
  /** The successor's id. @default the old id's stem and a new suffix (`acme-app--1f2e3d4c`) */
  id?: string | undefined;
  now: number;
}

/** Why a rotation did not happen, one member per outcome (a caller answers each its own way). */
type RotationRefused = {
  [Outcome in Exclude<KeyChangeOutcome, 'done'>]: { outcome: Outcome; successorId: string | undefined };
}[Exclude<KeyChangeOutcome, 'done'>];

/** A rotation done (the new key, shown once, and both records as written) or why not. */
export type Rotation = { outcome: 'done'; key: string; record: ApiKeyRecord; previous: ApiKeyRecord } | RotationRefused;

/** The id of a rotated key: the old one's stem and a new suffix, so the line of keys stays readable. */
function rotatedId(oldId: string): string {
  const stem = oldId.replace(/--[0-9a-f]{8}$/, '').slice(0, 110);
  return `${stem}--${randomBytes(4).toString('hex')}`;
}

/**
 * Rotates key `oldId` through `change`: a revoked key is declined, and a revoke that lands meanwhile stays (the
 * change's rule). The successor continues the old key's budget (`successorRecord`): the same period's spend.
 */
export async function rotateApiKey(change: ChangeOneKey, oldId: string, terms: RotationTerms): Promise<Rotation> {
  const key = generateApiKey();
  const sha256 = hashApiKey(key);
  let successorId = terms.id;
  let written: { record: ApiKeyRecord; previous: ApiKeyRecord } | undefined;
  const outcome = await change(oldId, (old) => {
    // A store may ask again after a write meanwhile: the answer is the last one's.
    written = undefined;
    if (old.disabled === true) return undefined;
    successorId ??= rotatedId(old.id);
    const record = successorRecord(old, { id: successorId, sha256, now: terms.now, expiresAt: terms.expiresAt });
    written = { record, previous: predecessorAfterRotation(old, terms.grace) };
    return { record: written.previous, add: record };
  });
  if (outcome !== 'done' || !written) return { outcome: outcome === 'done' ? 'declined' : outcome, successorId };
  return { outcome: 'done', key, ...written };
}
