import type { Completed, MultipartTicket } from '../wire/echoes-api.ts';
import type { EchoesClient } from './echoes-client.ts';

/** Where a multipart upload stands: `stored` of `total` bytes, `partsDone` of `partCount` parts. */
export interface PartsProgress {
  readonly stored: number;
  readonly total: number;
  readonly partsDone: number;
  readonly partCount: number;
}

/** The API calls a resumable multipart upload is made of. */
export type PartsApi = Pick<
  EchoesClient,
  'listParts' | 'signParts' | 'upload' | 'completeMultipart'
>;

/**
 * Sends the parts storage does not hold yet (it asks, so calling this again after a dropped
 * connection resumes where the upload stopped), then completes. Parts go one at a time.
 */
export async function uploadParts(
  api: PartsApi,
  ticket: Pick<MultipartTicket, 'echo_id' | 'part_size' | 'part_count'>,
  body: Blob,
  options: { onProgress?: (progress: PartsProgress) => void; signal?: AbortSignal } = {},
): Promise<Completed> {
  const stored = new Map(
    (await api.listParts(ticket.echo_id)).parts.map((p) => [p.part_number, p]),
  );
  const all = Array.from({ length: ticket.part_count }, (_, i) => i + 1);
  const sizeOf = (n: number): number =>
    Math.min(body.size, n * ticket.part_size) - (n - 1) * ticket.part_size;
  let storedBytes = [...stored.values()].reduce((sum, p) => sum + p.size, 0);
  const report = (inFlight = 0): void =>
    options.onProgress?.({
      stored: storedBytes + inFlight,
      total: body.size,
      partsDone: stored.size,
      partCount: ticket.part_count,
    });
  report();
  const missing = all.filter((n) => stored.get(n)?.size !== sizeOf(n));
  for (let i = 0; i < missing.length; i += 100) {
    const batch = missing.slice(i, i + 100);
    const signed = await api.signParts(ticket.echo_id, batch);
    for (const n of batch) {
      const part = body.slice((n - 1) * ticket.part_size, (n - 1) * ticket.part_size + sizeOf(n));
      const put = await api.upload(
        { upload_url: signed.urls[String(n)] ?? '', method: 'PUT', headers: signed.headers },
        part,
        {
          onProgress: ({ loaded }) => report(loaded),
          ...(options.signal ? { signal: options.signal } : {}),
        },
      );
      stored.set(n, { part_number: n, etag: put.etag ?? '', size: part.size });
      storedBytes += part.size;
      report();
    }
  }
  return api.completeMultipart(
    ticket.echo_id,
    all.map((n) => ({ part_number: n, etag: stored.get(n)?.etag ?? '' })),
  );
}
