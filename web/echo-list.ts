import { isApiError, type Echo } from '../src/client/echoes-client.ts';
import { formatBytes, settleDuration } from './audio.ts';
import { clearError, say, showError, ui } from './page.ts';
import { signOut } from './session.ts';
import { state } from './state.ts';
import { formatMeasured, waveformSvg } from './waveform.ts';

let nextCursor: string | null = null;

function describeDate(iso: string): string {
  return new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' }).format(
    new Date(iso),
  );
}

function chip(text: string, extra = ''): HTMLSpanElement {
  const span = document.createElement('span');
  span.className = `chip ${extra}`.trim();
  span.textContent = text;
  return span;
}

export function renderEcho(echo: Echo): HTMLLIElement {
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
    waveform = waveformSvg(
      echo.waveform,
      audio,
      measured,
      `Waveform of the echo from ${when}${length}. Click to play from there.`,
    );
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

export function updateEmpty(): void {
  const none = ui.list.children.length === 0;
  ui.empty.hidden = !none;
  if (none) ui.empty.textContent = 'No echoes yet. Record one above.';
}

export async function loadEchoes(reset: boolean): Promise<void> {
  if (!state.client.token) return;
  clearError();
  try {
    const page = await state.client.listEchoes({
      limit: 20,
      ...(!reset && nextCursor ? { cursor: nextCursor } : {}),
    });
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
    await state.client.deleteEcho(echo.echo_id);
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
