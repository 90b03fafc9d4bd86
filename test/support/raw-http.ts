import { connect, type Socket } from 'node:net';

export interface RawResponse {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

export interface RawResult {
  /** The first response on the connection, if the server sent one before closing. */
  readonly response: RawResponse | undefined;
  /** Everything the server wrote, for failure messages. */
  readonly raw: string;
  /** True when the wait ran out before the server answered or closed. */
  readonly timedOut: boolean;
}

/** Splits a raw HTTP/1.x response; undefined until the head and a complete body are there. */
export function parseRawResponse(
  raw: Buffer,
  closed: boolean,
  head = false,
): RawResponse | undefined {
  const end = raw.indexOf('\r\n\r\n');
  if (end < 0) return undefined;
  const lines = raw.subarray(0, end).toString('latin1').split('\r\n');
  const match = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '');
  if (!match) return undefined;
  const headers: Record<string, string> = {};
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    if (colon > 0)
      headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  const rest = raw.subarray(end + 4);
  const length = headers['content-length'];
  let body: Buffer;
  if (head) {
    // A HEAD answer announces the length of a body it never sends.
    body = Buffer.alloc(0);
  } else if (length !== undefined) {
    if (rest.length < Number(length)) return undefined;
    body = rest.subarray(0, Number(length));
  } else if (/chunked/i.test(headers['transfer-encoding'] ?? '')) {
    const decoded = decodeChunked(rest);
    if (!decoded) return undefined;
    body = decoded;
  } else {
    // No framing: the body runs to the end of the connection (or there is none, as on a 204).
    if (!closed && !/^(1\d\d|204|304)$/.test(match[1] ?? '')) return undefined;
    body = rest;
  }
  return { status: Number(match[1]), headers, body: body.toString('utf8') };
}

function decodeChunked(data: Buffer): Buffer | undefined {
  const parts: Buffer[] = [];
  let at = 0;
  for (;;) {
    const eol = data.indexOf('\r\n', at);
    if (eol < 0) return undefined;
    const size = parseInt(data.subarray(at, eol).toString('latin1'), 16);
    if (Number.isNaN(size)) return undefined;
    if (size === 0) return Buffer.concat(parts);
    if (data.length < eol + 2 + size + 2) return undefined;
    parts.push(data.subarray(eol + 2, eol + 2 + size));
    at = eol + 2 + size + 2;
  }
}

/**
 * Writes bytes as they are onto a fresh TCP connection (nothing a client library would fix up)
 * and reads the first response. `halfClose` ends the sending side after the bytes, so a server
 * waiting for more body sees the end; it is off by default because Node's server closes a
 * half-closed connection at once, before a handler that is still working can answer.
 */
export function rawExchange(
  port: number,
  request: Buffer | string,
  options: { waitMs?: number; host?: string; halfClose?: boolean; head?: boolean } = {},
): Promise<RawResult> {
  const waitMs = options.waitMs ?? 5000;
  return new Promise((resolve) => {
    const socket: Socket = connect({ port, host: options.host ?? '127.0.0.1' });
    const chunks: Buffer[] = [];
    let settled = false;
    const finish = (closed: boolean, timedOut: boolean): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      const raw = Buffer.concat(chunks);
      socket.destroy();
      resolve({
        response: parseRawResponse(raw, closed, options.head),
        raw: raw.toString('latin1'),
        timedOut,
      });
    };
    const timer = setTimeout(() => finish(false, true), waitMs);
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      if (parseRawResponse(Buffer.concat(chunks), false, options.head)) finish(false, false);
    });
    socket.on('error', () => finish(true, false));
    socket.on('close', () => finish(true, false));
    socket.on('connect', () => {
      socket.write(request, () => {
        if (options.halfClose && !socket.destroyed) socket.end();
      });
    });
  });
}
