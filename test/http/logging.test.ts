import { Writable } from 'node:stream';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { signDevToken } from '../../src/auth/tokens.ts';
import { loadConfig } from '../../src/app/config.ts';
import { createServer, loggerOptions } from '../../src/app/server.ts';
import { apiClient, fixture, putBytes, type Ticket } from '../support/api.ts';
import { freePort } from '../support/free-port.ts';

describe('logs', () => {
  it('are JSON lines with a request id, and hold no token or URL signature', async () => {
    const lines: string[] = [];
    const stream = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(...chunk.toString().split('\n').filter(Boolean));
        done();
      },
    });
    const dataDir = mkdtempSync(join(tmpdir(), 'echoes-log-'));
    const port = await freePort();
    const config = loadConfig({ DATA_DIR: dataDir, PORT: String(port) });
    const logger = { ...(loggerOptions('info') as object), stream };
    const { app } = await createServer(config, logger);
    await app.listen({ port, host: '127.0.0.1' });
    try {
      const token = await signDevToken(dataDir, 'alice');
      const api = apiClient(`http://127.0.0.1:${port}`, token);
      const ticket = (
        await api.call<Ticket>('POST', '/echoes/upload-url', {
          file_extension: 'wav',
          content_type: 'audio/wav',
        })
      ).body;
      expect((await putBytes(ticket, fixture('wav'))).status).toBe(200);
      const echo = (
        await api.call<{ audio_url: string }>('POST', '/echoes', { echo_id: ticket.echo_id })
      ).body;
      expect((await fetch(echo.audio_url)).status).toBe(200);
      await api.call('GET', '/echoes', undefined, { 'x-request-id': 'trace-123' });

      const entries = lines.map((l) => JSON.parse(l) as { reqId?: string; req?: { url: string } });
      expect(entries.length).toBeGreaterThan(6);
      expect(entries.filter((e) => e.req).every((e) => typeof e.reqId === 'string')).toBe(true);
      expect(entries.some((e) => e.reqId === 'trace-123')).toBe(true);
      const all = lines.join('\n');
      const signatures = [new URL(ticket.upload_url), new URL(echo.audio_url)].map(
        (u) => u.searchParams.get('signature') ?? 'missing',
      );
      for (const secret of [token, ...signatures]) expect(all).not.toContain(secret);
      expect(all).toContain('signature=[redacted]');
    } finally {
      await app.close();
    }
  });
});
