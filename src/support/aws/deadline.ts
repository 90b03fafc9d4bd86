import { AsyncLocalStorage } from 'node:async_hooks';
import { NodeHttpHandler, type NodeHttpHandlerOptions } from '@smithy/node-http-handler';
import type { HttpHandler, HttpRequest, HttpResponse } from '@smithy/protocol-http';
import type { HttpHandlerOptions } from '@smithy/types';

/**
 * The deadline of the SDK call in progress. The call's middleware starts it; the HTTP handler
 * below, which the SDK calls once per attempt without any way to pass it along, reads it here.
 */
const callDeadline = new AsyncLocalStorage<AbortSignal>();

export class DeadlineExceeded extends Error {
  constructor(readonly ms: number) {
    super(`no answer within ${ms} ms`);
    this.name = 'DeadlineExceeded';
  }
}

/**
 * Runs one SDK call, retries included, under a deadline: at `ms` it rejects with
 * DeadlineExceeded, even while the SDK sleeps between attempts, and the attempt in flight is
 * aborted so that its socket is not left waiting on a backend that does not answer.
 */
export async function underDeadline<T>(ms: number, call: () => Promise<T>): Promise<T> {
  const controller = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const exceeded = new DeadlineExceeded(ms);
      controller.abort(exceeded);
      reject(exceeded);
    }, ms);
  });
  const running = callDeadline.run(controller.signal, call);
  // Past the deadline the call still settles (aborted); nobody waits for it any more.
  running.catch(() => undefined);
  try {
    return await Promise.race([running, expired]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The SDK's Node handler, with the deadline of the current call applied until the response
 * headers arrive. A backend that accepts connections but never answers (frozen, or a black
 * hole) is given up on at the deadline instead of after the SDK's 30 s per attempt. The body of
 * a streamed answer (GetObject) is not cut by it: the socket idle timeout bounds that.
 */
export class DeadlineHttpHandler implements HttpHandler<NodeHttpHandlerOptions> {
  private readonly inner: NodeHttpHandler;

  constructor(options: NodeHttpHandlerOptions) {
    this.inner = new NodeHttpHandler(options);
  }

  async handle(
    request: HttpRequest,
    options: HttpHandlerOptions = {},
  ): Promise<{ response: HttpResponse }> {
    const deadline = callDeadline.getStore();
    if (deadline === undefined) return this.inner.handle(request, options);
    const attempt = new AbortController();
    const abort = (): void => attempt.abort(deadline.reason);
    const given = options.abortSignal as AbortSignal | undefined;
    if (deadline.aborted || given?.aborted) abort();
    deadline.addEventListener('abort', abort, { once: true });
    given?.addEventListener?.('abort', abort, { once: true });
    try {
      return await this.inner.handle(request, { ...options, abortSignal: attempt.signal });
    } finally {
      deadline.removeEventListener('abort', abort);
      given?.removeEventListener?.('abort', abort);
    }
  }

  updateHttpClientConfig(
    key: keyof NodeHttpHandlerOptions,
    value: NodeHttpHandlerOptions[typeof key],
  ): void {
    this.inner.updateHttpClientConfig(key, value);
  }

  httpHandlerConfigs(): NodeHttpHandlerOptions {
    return this.inner.httpHandlerConfigs();
  }

  destroy(): void {
    this.inner.destroy();
  }
}
