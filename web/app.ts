import { isApiError } from '../src/client/echoes-client.ts';
import { httpBase, watchPolicy } from './api-base.ts';
import { loadEchoes } from './echo-list.ts';
import { clearError, explainErrorAgain, refreshControls, say, showError, ui } from './page.ts';
import { followLink, setApiBase, signOut, tokenKey, tokenSubject } from './session.ts';
import { state } from './state.ts';
import { chooseFile, toggleRecording } from './take.ts';
import { uploadTake } from './upload.ts';

// The recorder page: signing in, and the wiring of the controls to session.ts, take.ts,
// upload.ts and echo-list.ts.

async function useToken(token: string): Promise<void> {
  state.client.token = token;
  localStorage.setItem(tokenKey(), token);
  const who = tokenSubject(token);
  ui.who.textContent = who ? `Signed in as ${who}` : 'Signed in';
  ui.who.dataset.state = 'signed-in';
  refreshControls();
  await loadEchoes(true);
}

ui.devForm.addEventListener('submit', (event) => {
  event.preventDefault();
  clearError();
  void (async () => {
    try {
      const { token, user_id } = await state.client.devToken(ui.userId.value.trim());
      await useToken(token);
      say(`Signed in as ${user_id} with a dev token (valid 24 h).`);
    } catch (err) {
      if (isApiError(err) && err.status === 404) {
        showError(
          new Error(
            'this API does not hand out dev tokens (it uses an identity provider). Paste a token under "Paste a token".',
          ),
          'Getting a token',
        );
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
  say(`Using the API at ${state.client.baseUrl}.`);
});

ui.record.addEventListener('click', () => void toggleRecording());
ui.file.addEventListener('change', chooseFile);
ui.uploadForm.addEventListener('submit', (event) => {
  event.preventDefault();
  void uploadTake();
});
ui.refresh.addEventListener(
  'click',
  () => void loadEchoes(true).then(() => say('List refreshed.')),
);
ui.more.addEventListener('click', () => void loadEchoes(false));

watchPolicy(explainErrorAgain);
followLink();
ui.apiBase.value = state.client.baseUrl;
document.documentElement.dataset.ready = 'true';
const savedToken = localStorage.getItem(tokenKey());
if (savedToken) void useToken(savedToken);
else refreshControls();
