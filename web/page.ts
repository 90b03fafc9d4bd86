import { isApiError } from '../src/client/echoes-client.ts';
import { refusedByPolicy } from './api-base.ts';
import { recordingSupported } from './recorder.ts';
import { recorder, state } from './state.ts';

function el<T extends HTMLElement>(id: string): T {
  const found = document.getElementById(id);
  if (!found) throw new Error(`#${id} is missing from the page`);
  return found as T;
}

export const ui = {
  who: el<HTMLParagraphElement>('who'),
  devForm: el<HTMLFormElement>('dev-token-form'),
  userId: el<HTMLInputElement>('user-id'),
  tokenForm: el<HTMLFormElement>('token-form'),
  token: el<HTMLInputElement>('token'),
  apiForm: el<HTMLFormElement>('api-form'),
  apiBase: el<HTMLInputElement>('api-base'),
  record: el<HTMLButtonElement>('record'),
  elapsed: el<HTMLSpanElement>('elapsed'),
  file: el<HTMLInputElement>('file'),
  take: el<HTMLDivElement>('take'),
  takeAudio: el<HTMLAudioElement>('take-audio'),
  takeInfo: el<HTMLParagraphElement>('take-info'),
  uploadForm: el<HTMLFormElement>('upload-form'),
  emotion: el<HTMLSelectElement>('emotion'),
  tags: el<HTMLInputElement>('tags'),
  upload: el<HTMLButtonElement>('upload'),
  progress: el<HTMLProgressElement>('progress'),
  progressText: el<HTMLSpanElement>('progress-text'),
  refresh: el<HTMLButtonElement>('refresh'),
  empty: el<HTMLParagraphElement>('empty'),
  list: el<HTMLUListElement>('echoes'),
  more: el<HTMLButtonElement>('more'),
  status: el<HTMLDivElement>('status'),
  error: el<HTMLDivElement>('error'),
};

export function say(message: string): void {
  ui.status.textContent = message;
}

let shownError: { err: unknown; during: string } | undefined;

export function clearError(): void {
  shownError = undefined;
  ui.error.hidden = true;
  ui.error.textContent = '';
}

/** Turns any failure into one sentence that says what to do next. */
function explain(err: unknown, during: string): string {
  const client = state.client;
  if (!isApiError(err))
    return `${during} failed: ${err instanceof Error ? err.message : String(err)}`;
  const refused = err.status === 0 ? refusedByPolicy(err.url) : undefined;
  if (refused !== undefined) {
    return err.url.startsWith(client.baseUrl)
      ? `${during} failed: this page may only talk to the server that sent it, not ${refused}. Open ${client.baseUrl}/ to use that API.`
      : `${during} failed: this page may not reach the storage at ${refused}; the server's page policy leaves it out (tell its operator).`;
  }
  if (err.status === 0) {
    const where = err.url.startsWith(client.baseUrl)
      ? `the API at ${client.baseUrl}`
      : 'the storage URL';
    return `${during} failed: cannot reach ${where}. Check that it is running and that its CORS settings allow ${location.origin}.`;
  }
  if (err.status === 401)
    return `${during} failed: the token was refused (${err.message}) Get a new token above.`;
  return `${during} failed: ${err.message} (${err.code})`;
}

export function showError(err: unknown, during: string): void {
  shownError = { err, during };
  ui.error.textContent = explain(err, during);
  ui.error.hidden = false;
  say('');
}

/** A refusal by the page policy can be reported after its error was shown: say it again, naming it. */
export function explainErrorAgain(): void {
  if (shownError) showError(shownError.err, shownError.during);
}

export function refreshControls(): void {
  const { client, busy, take, unfinished } = state;
  const signedIn = Boolean(client.token);
  ui.record.disabled = !signedIn || busy || !recordingSupported();
  ui.file.disabled = !signedIn || busy || recorder.recording;
  ui.upload.disabled = !signedIn || busy || !take || recorder.recording;
  ui.upload.textContent =
    unfinished !== undefined && unfinished.take === take ? 'Resume upload' : 'Upload echo';
  ui.refresh.disabled = !signedIn || busy;
  if (!recordingSupported())
    ui.record.title = 'This browser cannot record audio; choose a file instead.';
}
