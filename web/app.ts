import { EchoesClient, isApiError, type Echo, type MultipartTicket } from '../src/client/echoes-client.ts';
import { formatBytes, formatSeconds, settleDuration, sha256Base64, uploadFormat, type UploadFormat } from './audio.ts';
import { API_KEY, apiFromLink, httpBase, refusedByPolicy, savedApiBase, watchPolicy } from './api-base.ts';
import { MicRecorder, recordingSupported } from './recorder.ts';
import { formatMeasured, waveformSvg } from './waveform.ts';
import { xhrUploader } from './xhr-uploader.ts';

interface Take {
  readonly blob: Blob;
  readonly format: UploadFormat;
  readonly seconds: number | null;
  readonly label: string;
}

function el<T extends HTMLElement>(id: string): T {
  const found = document.getElementById(id);
  if (!found) throw new Error(`#${id} is missing from the page`);
  return found as T;
}

const ui = {
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

const SUPPORTED = 'webm, wav, mp3, m4a, ogg, flac or aac';

let client = new EchoesClient({ baseUrl: savedApiBase(), uploader: xhrUploader });
let take: Take | undefined;
let nextCursor: string | null = null;
let busy = false;
/** A multipart upload of the current take that stopped part-way: Upload again resumes it. */
let unfinished: { take: Take; ticket: MultipartTicket } | undefined;
/** Above this, takes go up in parts (DESIGN.md: MULTIPART_THRESHOLD_BYTES' default). */
const MULTIPART_THRESHOLD_BYTES = 8 * 1024 * 1024;
const recorder = new MicRecorder();
let ticker: number | undefined;
let takeUrl: string | undefined;

const tokenKey = (): string => `echoes.token:${client.baseUrl}`;

function say(message: string): void {
  ui.status.textContent = message;
}

let shownError: { err: unknown; during: string } | undefined;

function clearError(): void {
  shownError = undefined;
  ui.error.hidden = true;
  ui.error.textContent = '';
}

/** Turns any failure into one sentence that says what to do next. */
function explain(err: unknown, during: string): string {
  if (!isApiError(err)) return `${during} failed: ${err instanceof Error ? err.message : String(err)}`;
  const refused = err.status === 0 ? refusedByPolicy(err.url) : undefined;
  if (refused !== undefined) {
    return err.url.startsWith(client.baseUrl)
      ? `${during} failed: this page may only talk to the server that sent it, not ${refused}. Open ${client.baseUrl}/ to use that API.`
      : `${during} failed: this page may not reach the storage at ${refused}; the server's page policy leaves it out (tell its operator).`;
  }
  if (err.status === 0) {
    const where = err.url.startsWith(client.baseUrl) ? `the API at ${client.baseUrl}` : 'the storage URL';
    return `${during} failed: cannot reach ${where}. Check that it is running and that its CORS settings allow ${location.origin}.`;
  }
  if (err.status === 401) return `${during} failed: the token was refused (${err.message}) Get a new token above.`;
  return `${during} failed: ${err.message} (${err.code})`;
}

function showError(err: unknown, during: string): void {
  shownError = { err, during };
  ui.error.textContent = explain(err, during);
  ui.error.hidden = false;
  say('');
}

/** The token's `sub`, for display only (the API checks the signature). */
function tokenSubject(token: string): string | undefined {
  try {
    const payload = token.split('.')[1] ?? '';
    const json = atob(payload.replace(/-/g, '+').replace(/_/g, '/'));
    const sub = (JSON.parse(json) as { sub?: unknown }).sub;
    return typeof sub === 'string' ? sub : undefined;
  } catch {
    return undefined;
  }
}

function refreshControls(): void {
  const signedIn = Boolean(client.token);
  ui.record.disabled = !signedIn || busy || !recordingSupported();
  ui.file.disabled = !signedIn || busy || recorder.recording;
  ui.upload.disabled = !signedIn || busy || !take || recorder.recording;
  ui.upload.textContent = unfinished !== undefined && unfinished.take === take ? 'Resume upload' : 'Upload echo';
  ui.refresh.disabled = !signedIn || busy;
  if (!recordingSupported()) ui.record.title = 'This browser cannot record audio; choose a file instead.';
}

async function useToken(token: string): Promise<void> {
  client.token = token;
  localStorage.setItem(tokenKey(), token);
  const who = tokenSubject(token);
  ui.who.textContent = who ? `Signed in as ${who}` : 'Signed in';
  ui.who.dataset.state = 'signed-in';
  refreshControls();
  await loadEchoes(true);
}

function signOut(): void {
  client.token = undefined;
  ui.who.textContent = 'Not signed in';
  ui.who.dataset.state = 'signed-out';
  ui.list.replaceChildren();
  ui.empty.textContent = 'Connect to see your echoes.';
  ui.empty.hidden = false;
  refreshControls();
}

function setApiBase(base: string): void {
  client = new EchoesClient({ baseUrl: base, uploader: xhrUploader });
  ui.apiBase.value = client.baseUrl;
  if (client.baseUrl === location.origin) localStorage.removeItem(API_KEY);
  else localStorage.setItem(API_KEY, client.baseUrl);
}

/** Applies a link's ?api= as the user chose (see apiFromLink). */
function followLink(): void {
  const choice = apiFromLink(client.baseUrl);
  if (choice.kind === 'refused') {
    ui.error.textContent = `The link's API address (?api=) was refused: only http:// and https:// URLs can be an API. Still using the API at ${client.baseUrl}.`;
    ui.error.hidden = false;
  } else if (choice.kind === 'use') {
    setApiBase(choice.base);
    say(`Using the API at ${choice.base}.`);
  } else if (choice.kind === 'declined') {
    say(`Kept the API at ${client.baseUrl}.`);
  }
}

// ---- echoes list ----

function describeDate(iso: string): string {
  return new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' }).format(new Date(iso));
}

function chip(text: string, extra = ''): HTMLSpanElement {
  const span = document.createElement('span');
  span.className = `chip ${extra}`.trim();
  span.textContent = text;
  return span;
}

function renderEcho(echo: Echo): HTMLLIElement {
  const li = document.createElement('li');
  li.className = 'echo';
  li.dataset.echoId = echo.echo_id;
  const when = describeDate(echo.created_at);

  const head = document.createElement('div');
  head.className = 'echo-head';
  const title = document.createElement('span');
  title.className = 'echo-title';
  title.textContent = when;
  const chips = document.createElement('div');
  chips.className = 'chips';
  if (echo.emotion) chips.append(chip(echo.emotion, 'emotion'));
  for (const tag of echo.tags) chips.append(chip(`#${tag}`));
  // The server's measurement, never the browser's guess: MediaRecorder's webm declares no length.
  const measured = echo.duration_seconds;
  if (measured !== null) li.dataset.measuredDuration = String(measured);
  chips.append(chip(measured === null ? 'duration unknown' : formatMeasured(measured), 'duration'));
  const format = echo.audio ? `${echo.file_extension} · ${echo.audio.codec}` : echo.file_extension;
  chips.append(chip(`${format} · ${formatBytes(echo.file_size)}`));
  head.append(title, chips);

  const audio = document.createElement('audio');
  audio.controls = true;
  audio.preload = 'metadata';
  audio.setAttribute('aria-label', `Play the echo from ${when}`);
  settleDuration(audio);
  audio.src = echo.audio_url;

  let waveform: Element;
  if (echo.waveform) {
    const length = measured === null ? '' : `, ${formatMeasured(measured)}`;
    waveform = waveformSvg(echo.waveform, audio, measured, `Waveform of the echo from ${when}${length}. Click to play from there.`);
  } else {
    waveform = document.createElement('p');
    waveform.className = 'muted no-waveform';
    waveform.textContent = 'No waveform: this server reads audio headers only (decoding off).';
  }

  const del = document.createElement('button');
  del.type = 'button';
  del.className = 'danger';
  del.textContent = 'Delete';
  del.setAttribute('aria-label', `Delete the echo from ${when}`);
  let armed: number | undefined;
  // Two presses, so a stray click or Enter never loses a recording.
  del.addEventListener('click', () => {
    if (armed === undefined) {
      del.textContent = 'Press again to delete';
      armed = window.setTimeout(() => {
        armed = undefined;
        del.textContent = 'Delete';
      }, 4000);
      return;
    }
    window.clearTimeout(armed);
    void deleteEcho(echo, li, del);
  });

  const play = document.createElement('div');
  play.className = 'echo-play';
  play.append(audio, del);
  li.append(head, waveform, play);
  return li;
}

function updateEmpty(): void {
  const none = ui.list.children.length === 0;
  ui.empty.hidden = !none;
  if (none) ui.empty.textContent = 'No echoes yet. Record one above.';
}

async function loadEchoes(reset: boolean): Promise<void> {
  if (!client.token) return;
  clearError();
  try {
    const page = await client.listEchoes({ limit: 20, ...(!reset && nextCursor ? { cursor: nextCursor } : {}) });
    if (reset) ui.list.replaceChildren();
    ui.list.append(...page.echoes.map(renderEcho));
    nextCursor = page.next_cursor;
    ui.more.hidden = nextCursor === null;
    updateEmpty();
  } catch (err) {
    showError(err, 'Loading your echoes');
    if (isApiError(err) && err.status === 401) signOut();
  }
}

async function deleteEcho(echo: Echo, li: HTMLLIElement, button: HTMLButtonElement): Promise<void> {
  clearError();
  button.disabled = true;
  try {
    await client.deleteEcho(echo.echo_id);
    li.remove();
    updateEmpty();
    say('Echo deleted.');
    ui.list.querySelector<HTMLButtonElement>('button.danger')?.focus();
  } catch (err) {
    button.disabled = false;
    button.textContent = 'Delete';
    showError(err, 'Deleting the echo');
  }
}

// ---- the take: a recording or a chosen file ----

function setRecordLabel(text: string): void {
  const label = ui.record.querySelector('.label');
  if (label) label.textContent = text;
}

function setTake(next: Take | undefined): void {
  take = next;
  if (unfinished && unfinished.take !== next) {
    // The take it belonged to is gone: give the upload up, so its reservation comes back now.
    void client.abortMultipart(unfinished.ticket.echo_id).catch(() => undefined);
    unfinished = undefined;
  }
  if (takeUrl) URL.revokeObjectURL(takeUrl);
  takeUrl = undefined;
  ui.take.hidden = !next;
  if (next) {
    takeUrl = URL.createObjectURL(next.blob);
    settleDuration(ui.takeAudio);
    ui.takeAudio.src = takeUrl;
    const length = next.seconds === null ? '' : `${formatSeconds(next.seconds)} · `;
    ui.takeInfo.textContent = `${next.label}: ${length}${formatBytes(next.blob.size)} · ${next.format.contentType}`;
  } else {
    ui.takeAudio.removeAttribute('src');
    ui.takeAudio.load();
  }
  refreshControls();
}

async function toggleRecording(): Promise<void> {
  clearError();
  if (!recorder.recording) {
    try {
      await recorder.start();
    } catch (err) {
      const denied = err instanceof DOMException && err.name === 'NotAllowedError';
      showError(denied ? new Error('the microphone is blocked. Allow it in the address bar, or choose a file.') : err, 'Recording');
      return;
    }
    ui.record.setAttribute('aria-pressed', 'true');
    setRecordLabel('Stop');
    say('Recording… press Stop when you are done.');
    ticker = window.setInterval(() => {
      ui.elapsed.textContent = formatSeconds(recorder.elapsedSeconds);
    }, 250);
    refreshControls();
    return;
  }
  window.clearInterval(ticker);
  const recording = await recorder.stop();
  ui.record.setAttribute('aria-pressed', 'false');
  setRecordLabel('Record again');
  const format = uploadFormat(recording.mimeType);
  if (!format) {
    showError(new Error(`this browser records ${recording.mimeType}, which the API does not store. Choose a file instead.`), 'Recording');
    refreshControls();
    return;
  }
  setTake({ blob: recording.blob, format, seconds: Math.round(recording.seconds * 100) / 100, label: 'Recording' });
  say(`Recorded ${formatSeconds(recording.seconds)}. Set emotion and tags, then upload.`);
}

function chooseFile(): void {
  clearError();
  const file = ui.file.files?.[0];
  if (!file) return;
  const format = uploadFormat(file.type, file.name);
  if (!format) {
    setTake(undefined);
    showError(new Error(`"${file.name}" is not a supported audio file. Use ${SUPPORTED}.`), 'Choosing a file');
    return;
  }
  setTake({ blob: file, format, seconds: null, label: file.name });
  say('File ready. Set emotion and tags, then upload.');
}

function parseTags(raw: string): string[] {
  const tags = raw.split(',').map((t) => t.trim().slice(0, 64)).filter(Boolean);
  return [...new Set(tags)].slice(0, 20);
}

async function uploadTake(): Promise<void> {
  if (!take || busy) return;
  clearError();
  busy = true;
  refreshControls();
  const current = take;
  ui.progress.hidden = false;
  ui.progress.value = 0;
  ui.progressText.textContent = '';
  try {
    const showProgress = (stored: number, total: number, detail = ''): void => {
      const pct = Math.min(100, Math.round((stored / total) * 100));
      ui.progress.value = pct;
      ui.progressText.textContent = `${pct}%${detail}`;
    };
    let echoId: string;
    if (current.blob.size > MULTIPART_THRESHOLD_BYTES) {
      const resuming = unfinished?.take === current;
      say(resuming ? 'Resuming the upload where it stopped…' : 'Preparing the upload…');
      const checksum = resuming ? null : await sha256Base64(current.blob);
      const ticket = unfinished?.take === current ? unfinished.ticket : await client.startMultipart({
        file_extension: current.format.extension,
        content_type: current.format.contentType,
        file_size: current.blob.size,
        ...(checksum ? { checksum_sha256: checksum } : {}),
      });
      unfinished = { take: current, ticket };
      say(`Uploading in ${ticket.part_count} parts…`);
      await client.uploadParts(ticket, current.blob, {
        onProgress: (p) => showProgress(p.stored, p.total, ` · part ${Math.min(p.partsDone + 1, p.partCount)} of ${p.partCount}`),
      });
      unfinished = undefined;
      echoId = ticket.echo_id;
    } else {
      say('Preparing the upload…');
      const checksum = await sha256Base64(current.blob);
      const ticket = await client.uploadUrl({
        file_extension: current.format.extension,
        content_type: current.format.contentType,
        file_size: current.blob.size,
        ...(checksum ? { checksum_sha256: checksum } : {}),
      });
      say('Uploading…');
      await client.upload(ticket, current.blob, {
        onProgress: ({ loaded, total }) => showProgress(loaded, total ?? current.blob.size),
      });
      echoId = ticket.echo_id;
    }
    say('Checking the upload…');
    const echo = await client.createEcho({
      echo_id: echoId,
      emotion: ui.emotion.value || null,
      tags: parseTags(ui.tags.value),
    });
    ui.list.prepend(renderEcho(echo));
    updateEmpty();
    setTake(undefined);
    ui.uploadForm.reset();
    ui.file.value = '';
    setRecordLabel('Record');
    ui.elapsed.textContent = '0:00';
    say('Echo uploaded.');
  } catch (err) {
    showError(err, 'Uploading');
    if (unfinished?.take === current) say('The upload stopped. Press "Resume upload": the parts already stored are not sent again.');
  } finally {
    busy = false;
    ui.progress.hidden = true;
    ui.progressText.textContent = '';
    refreshControls();
  }
}

// ---- wiring ----

ui.devForm.addEventListener('submit', (event) => {
  event.preventDefault();
  clearError();
  void (async () => {
    try {
      const { token, user_id } = await client.devToken(ui.userId.value.trim());
      await useToken(token);
      say(`Signed in as ${user_id} with a dev token (valid 24 h).`);
    } catch (err) {
      if (isApiError(err) && err.status === 404) {
        showError(new Error('this API does not hand out dev tokens (it uses an identity provider). Paste a token under "Paste a token".'), 'Getting a token');
      } else {
        showError(err, 'Getting a token');
      }
    }
  })();
});

ui.tokenForm.addEventListener('submit', (event) => {
  event.preventDefault();
  clearError();
  const token = ui.token.value.trim().replace(/^Bearer\s+/i, '');
  if (!token) {
    showError(new Error('paste a token first.'), 'Signing in');
    return;
  }
  ui.token.value = '';
  void useToken(token).then(() => say('Token saved in this browser.'));
});

ui.apiForm.addEventListener('submit', (event) => {
  event.preventDefault();
  clearError();
  const base = httpBase(ui.apiBase.value);
  if (base === undefined) {
    showError(new Error('enter an http:// or https:// URL.'), 'Changing the API');
    return;
  }
  setApiBase(base);
  signOut();
  const saved = localStorage.getItem(tokenKey());
  if (saved) void useToken(saved);
  say(`Using the API at ${client.baseUrl}.`);
});

ui.record.addEventListener('click', () => void toggleRecording());
ui.file.addEventListener('change', chooseFile);
ui.uploadForm.addEventListener('submit', (event) => {
  event.preventDefault();
  void uploadTake();
});
ui.refresh.addEventListener('click', () => void loadEchoes(true).then(() => say('List refreshed.')));
ui.more.addEventListener('click', () => void loadEchoes(false));

watchPolicy(() => {
  if (shownError) showError(shownError.err, shownError.during);
});
followLink();
ui.apiBase.value = client.baseUrl;
document.documentElement.dataset.ready = 'true';
const savedToken = localStorage.getItem(tokenKey());
if (savedToken) void useToken(savedToken);
else refreshControls();
