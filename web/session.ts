import { EchoesClient } from '../src/client/echoes-client.ts';
import { API_KEY, apiFromLink } from './api-base.ts';
import { refreshControls, say, ui } from './page.ts';
import { state } from './state.ts';
import { xhrUploader } from './xhr-uploader.ts';

export const tokenKey = (): string => `echoes.token:${state.client.baseUrl}`;

/** The token's `sub`, for display only (the API checks the signature). */
export function tokenSubject(token: string): string | undefined {
  try {
    const payload = token.split('.')[1] ?? '';
    const json = atob(payload.replace(/-/g, '+').replace(/_/g, '/'));
    const sub = (JSON.parse(json) as { sub?: unknown }).sub;
    return typeof sub === 'string' ? sub : undefined;
  } catch {
    return undefined;
  }
}

export function signOut(): void {
  state.client.token = undefined;
  ui.who.textContent = 'Not signed in';
  ui.who.dataset.state = 'signed-out';
  ui.list.replaceChildren();
  ui.empty.textContent = 'Connect to see your echoes.';
  ui.empty.hidden = false;
  refreshControls();
}

export function setApiBase(base: string): void {
  const client = new EchoesClient({ baseUrl: base, uploader: xhrUploader });
  state.client = client;
  ui.apiBase.value = client.baseUrl;
  if (client.baseUrl === location.origin) localStorage.removeItem(API_KEY);
  else localStorage.setItem(API_KEY, client.baseUrl);
}

/** Applies a link's ?api= as the user chose (see apiFromLink). */
export function followLink(): void {
  const choice = apiFromLink(state.client.baseUrl);
  if (choice.kind === 'refused') {
    ui.error.textContent = `The link's API address (?api=) was refused: only http:// and https:// URLs can be an API. Still using the API at ${state.client.baseUrl}.`;
    ui.error.hidden = false;
  } else if (choice.kind === 'use') {
    setApiBase(choice.base);
    say(`Using the API at ${choice.base}.`);
  } else if (choice.kind === 'declined') {
    say(`Kept the API at ${state.client.baseUrl}.`);
  }
}
