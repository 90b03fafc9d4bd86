import { formatBytes, formatSeconds, settleDuration, uploadFormat } from './audio.ts';
import { clearError, refreshControls, say, showError, ui } from './page.ts';
import { recorder, state, type Take } from './state.ts';

const SUPPORTED = 'webm, wav, mp3, m4a, ogg, flac or aac';

let ticker: number | undefined;
let takeUrl: string | undefined;

export function setRecordLabel(text: string): void {
  const label = ui.record.querySelector('.label');
  if (label) label.textContent = text;
}

export function setTake(next: Take | undefined): void {
  state.take = next;
  const unfinished = state.unfinished;
  if (unfinished && unfinished.take !== next) {
    // The take it belonged to is gone: give the upload up, so its reservation comes back now.
    void state.client.abortMultipart(unfinished.ticket.echo_id).catch(() => undefined);
    state.unfinished = undefined;
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

export async function toggleRecording(): Promise<void> {
  clearError();
  if (!recorder.recording) {
    try {
      await recorder.start();
    } catch (err) {
      const denied = err instanceof DOMException && err.name === 'NotAllowedError';
      showError(
        denied
          ? new Error('the microphone is blocked. Allow it in the address bar, or choose a file.')
          : err,
        'Recording',
      );
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
    showError(
      new Error(
        `this browser records ${recording.mimeType}, which the API does not store. Choose a file instead.`,
      ),
      'Recording',
    );
    refreshControls();
    return;
  }
  setTake({
    blob: recording.blob,
    format,
    seconds: Math.round(recording.seconds * 100) / 100,
    label: 'Recording',
  });
  say(`Recorded ${formatSeconds(recording.seconds)}. Set emotion and tags, then upload.`);
}

export function chooseFile(): void {
  clearError();
  const file = ui.file.files?.[0];
  if (!file) return;
  const format = uploadFormat(file.type, file.name);
  if (!format) {
    setTake(undefined);
    showError(
      new Error(`"${file.name}" is not a supported audio file. Use ${SUPPORTED}.`),
      'Choosing a file',
    );
    return;
  }
  setTake({ blob: file, format, seconds: null, label: file.name });
  say('File ready. Set emotion and tags, then upload.');
}
