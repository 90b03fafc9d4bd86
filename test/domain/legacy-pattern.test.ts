import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { AppError } from '../../src/domain/errors.ts';
import { compileLegacyPattern, isMismatch } from '../../src/domain/legacy-pattern.ts';

const refusal = (pattern: string): string => {
  try {
    compileLegacyPattern(pattern);
  } catch (err) {
    if (err instanceof AppError) return err.message;
    throw err;
  }
  return 'accepted';
};

describe('legacy key patterns', () => {
  const audio = compileLegacyPattern('audio/{user_id}/{name}.{ext}');

  it('takes the parts of a matching key, the extension in lower case', () => {
    expect(audio.match('audio/user-01/hello world.WAV')).toEqual({
      userId: 'user-01',
      name: 'hello world',
      extension: 'wav',
    });
    // The last dot separates the extension.
    expect(audio.match('audio/u@x.org/take.2.final.mp3')).toEqual({
      userId: 'u@x.org',
      name: 'take.2.final',
      extension: 'mp3',
    });
  });

  it('reports keys of another shape as unmatched', () => {
    for (const key of [
      'audio/user-01/nested/a.wav',
      'video/user-01/a.wav',
      'audio/user-01/noext',
      'audio/user-01/',
      'xaudio/u/a.wav',
      'audio/u/a.wav/',
    ]) {
      const r = audio.match(key);
      expect(isMismatch(r), key).toBe(true);
    }
  });

  it('refuses a user part that is not a user id', () => {
    const r = compileLegacyPattern('{user_id}/{name}.{ext}').match('..x#y/a.wav');
    expect(isMismatch(r) && r.message).toMatch(/not a user id/);
    const dots = compileLegacyPattern('{user_id}/{name}.{ext}').match('../a.wav');
    expect(isMismatch(dots)).toBe(true);
  });

  it('checks date parts as a real date', () => {
    const dated = compileLegacyPattern('rec/{yyyy}/{mm}/{dd}/{user_id}-{name}.{ext}');
    expect(dated.match('rec/2023/02/28/alice-x.ogg')).toEqual({
      userId: 'alice',
      name: 'x',
      extension: 'ogg',
    });
    const r = dated.match('rec/2023/02/30/alice-x.ogg');
    expect(isMismatch(r) && r.message).toMatch(/not a date/);
  });

  it('treats regular-expression characters in the pattern as text', () => {
    const p = compileLegacyPattern('a+b(c)/{user_id}/[{name}].{ext}');
    expect(p.match('a+b(c)/u/[x].wav')).toEqual({ userId: 'u', name: 'x', extension: 'wav' });
    expect(isMismatch(p.match('aab(c)/u/[x].wav'))).toBe(true);
  });

  it('refuses patterns that cannot name a key unambiguously, saying what to write', () => {
    expect(refusal('audio/{name}.{ext}')).toMatch(/\{user_id\}/);
    expect(refusal('audio/{user_id}/{name}.{ext}/{colour}')).toMatch(/unknown part \{colour\}/);
    expect(refusal('{user_id}/{name}/{name}.{ext}')).toMatch(/twice/);
    expect(refusal('{user_id}/{name}{ext}')).toMatch(/side by side/);
    expect(refusal('{user_id}/{yyyy}/{name}.{ext}')).toMatch(/together/);
    expect(refusal('{user_id}/{name}.{ext')).toMatch(/brace/);
    expect(refusal('')).toMatch(/1-1024/);
  });

  it('matches every key built from its parts back to those parts', () => {
    const segment = fc.stringMatching(/^[A-Za-z0-9 _.-]{1,20}$/).filter((s) => !s.includes('/'));
    fc.assert(
      fc.property(
        fc.stringMatching(/^[A-Za-z0-9_-]{1,30}$/),
        segment,
        fc.constantFrom('wav', 'mp3', 'WEBM', 'txt'),
        (user, name, ext) => {
          expect(audio.match(`audio/${user}/${name}.${ext}`)).toEqual({
            userId: user,
            name,
            extension: ext.toLowerCase(),
          });
        },
      ),
    );
  });
});
