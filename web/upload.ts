import { sha256Base64 } from './audio.ts';
import { renderEcho, updateEmpty } from './echo-list.ts';
import { clearError, refreshControls, say, showError, ui } from './page.ts';
import { state } from './state.ts';
import { setRecordLabel, setTake } from './take.ts';

/** Above this, takes go up in parts (the server's default MULTIPART_THRESHOLD_BYTES). */
const MULTIPART_THRESHOLD_BYTES = 8 * 1024 * 1024;

function parseTags(raw: string): string[] {
  const tags = raw
    .split(',')
    .map((t) => t.trim().slice(0, 64))
    .filter(Boolean);
  return [...new Set(tags)].slice(0, 20);
}

export async function uploadTake(): Promise<void> {
  if (!state.take || state.busy) return;
  clearError();
  state.busy = true;
  refreshControls();
  const current = state.take;
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
      const resuming = state.unfinished?.take === current;
      say(resuming ? 'Resuming the upload where it stopped…' : 'Preparing the upload…');
      const checksum = resuming ? null : await sha256Base64(current.blob);
      const ticket =
        state.unfinished?.take === current
          ? state.unfinished.ticket
          : await state.client.startMultipart({
              file_extension: current.format.extension,
              content_type: current.format.contentType,
              file_size: current.blob.size,
              ...(checksum ? { checksum_sha256: checksum } : {}),
            });
      state.unfinished = { take: current, ticket };
      say(`Uploading in ${ticket.part_count} parts…`);
      await state.client.uploadParts(ticket, current.blob, {
        onProgress: (p) =>
          showProgress(
            p.stored,
            p.total,
            ` · part ${Math.min(p.partsDone + 1, p.partCount)} of ${p.partCount}`,
          ),
      });
      state.unfinished = undefined;
      echoId = ticket.echo_id;
    } else {
      say('Preparing the upload…');
      const checksum = await sha256Base64(current.blob);
      const ticket = await state.client.uploadUrl({
        file_extension: current.format.extension,
        content_type: current.format.contentType,
        file_size: current.blob.size,
        ...(checksum ? { checksum_sha256: checksum } : {}),
      });
      say('Uploading…');
      await state.client.upload(ticket, current.blob, {
        onProgress: ({ loaded, total }) => showProgress(loaded, total ?? current.blob.size),
      });
      echoId = ticket.echo_id;
    }
    say('Checking the upload…');
    const echo = await state.client.createEcho({
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
    if (state.unfinished?.take === current)
      say(
        'The upload stopped. Press "Resume upload": the parts already stored are not sent again.',
      );
  } finally {
    state.busy = false;
    ui.progress.hidden = true;
    ui.progressText.textContent = '';
    refreshControls();
  }
}
