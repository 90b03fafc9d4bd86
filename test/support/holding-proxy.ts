import { createServer, request, type IncomingMessage, type ServerResponse } from 'node:http';
import { freePort } from './free-port.ts';

/**
 * A real HTTP proxy in front of a test server (moto) that forwards everything, except that the
 * requests `hold` picks wait until `release()`: a backend that is slow exactly where a test needs
 * a process to be busy (a sweep listing the bucket), with no timing involved.
 */
export interface HoldingProxy {
  readonly endpoint: string;
  /** Requests held so far. */
  held(): number;
  /** Resolves when `n` requests are being held. */
  waitForHeld(n?: number): Promise<void>;
  /** Forwards the held requests and every later one. */
  release(): void;
  stop(): Promise<void>;
}

export async function startHoldingProxy(
  target: string,
  hold: (req: IncomingMessage) => boolean,
): Promise<HoldingProxy> {
  const to = new URL(target);
  let released = false;
  const waiting: (() => void)[] = [];
  let heldCount = 0;
  const watchers: { n: number; resolve(): void }[] = [];
  const forward = (req: IncomingMessage, res: ServerResponse): void => {
    const upstream = request(
      {
        host: to.hostname,
        port: to.port,
        method: req.method,
        path: req.url,
        headers: req.headers,
      },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  };
  const server = createServer((req, res) => {
    if (released || !hold(req)) {
      forward(req, res);
      return;
    }
    heldCount++;
    waiting.push(() => forward(req, res));
    for (const w of watchers.filter((w) => heldCount >= w.n)) w.resolve();
  });
  const port = await freePort();
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  return {
    endpoint: `http://127.0.0.1:${port}`,
    held: () => heldCount,
    waitForHeld: (n = 1) =>
      heldCount >= n ? Promise.resolve() : new Promise((resolve) => watchers.push({ n, resolve })),
    release() {
      released = true;
      for (const go of waiting.splice(0)) go();
    },
    stop: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
