import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { reclaimStreamBuffers } from '../../src/services/reclaim.ts';

describe('reclaimStreamBuffers', () => {
  it('scavenges without leaving gc() to the rest of the process', () => {
    const before = runInNewContext('typeof gc') as string;
    expect(() => reclaimStreamBuffers()).not.toThrow();
    expect(() => reclaimStreamBuffers()).not.toThrow();
    // A process started with --expose-gc keeps it; one started without does not gain it.
    expect(runInNewContext('typeof gc')).toBe(before);
    if (before === 'undefined')
      expect(typeof (globalThis as { gc?: unknown }).gc).toBe('undefined');
  });
});
