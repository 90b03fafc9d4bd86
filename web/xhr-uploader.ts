import { toBlob, type TransportResponse, type Uploader } from '../src/client/echoes-client.ts';

function parseHeaders(raw: string): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const line of raw.trim().split(/[\r\n]+/)) {
    const cut = line.indexOf(':');
    if (cut > 0) headers[line.slice(0, cut).trim().toLowerCase()] = line.slice(cut + 1).trim();
  }
  return headers;
}

/** fetch cannot report upload progress; XMLHttpRequest's upload events can. */
export const xhrUploader: Uploader = (request) =>
  new Promise<TransportResponse>((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(request.method, request.url);
    for (const [name, value] of Object.entries(request.headers)) xhr.setRequestHeader(name, value);
    xhr.upload.onprogress = (event) => {
      request.onProgress?.({
        loaded: event.loaded,
        total: event.lengthComputable ? event.total : undefined,
      });
    };
    xhr.onload = () =>
      resolve({
        status: xhr.status,
        headers: parseHeaders(xhr.getAllResponseHeaders()),
        bodyText: xhr.responseText,
      });
    // The browser hides why (CORS refusal, connection refused…); the client says what to check.
    xhr.onerror = () =>
      reject(new TypeError('the browser refused or lost the connection (CORS or network)'));
    xhr.ontimeout = () => reject(new DOMException('upload timed out', 'TimeoutError'));
    xhr.onabort = () => reject(new DOMException('upload cancelled', 'AbortError'));
    if (request.signal) {
      if (request.signal.aborted) {
        reject(request.signal.reason);
        return;
      }
      request.signal.addEventListener('abort', () => xhr.abort(), { once: true });
    }
    xhr.send(toBlob(request.body));
  });
