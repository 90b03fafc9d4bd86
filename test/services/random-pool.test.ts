import { describe, expect, it } from 'vitest';
import { RandomPool } from '../../src/services/random-pool.ts';

describe('RandomPool', () => {
  it('never hands out the same bytes twice, across refills', () => {
    const pool = new RandomPool();
    const seen = new Set<string>();
    for (let i = 0; i < 5000; i++) {
      const bytes = pool.take(10);
      expect(bytes.length).toBe(10);
      seen.add(Buffer.from(bytes).toString('hex'));
    }
    expect(seen.size).toBe(5000);
  });

  it('returns copies that later takes do not overwrite', () => {
    const pool = new RandomPool();
    const first = pool.take(16);
    const copy = Buffer.from(first).toString('hex');
    for (let i = 0; i < 3000; i++) pool.take(16);
    expect(Buffer.from(first).toString('hex')).toBe(copy);
  });
});
