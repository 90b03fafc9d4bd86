import { type Check, expect, expectError } from './check.ts';

/** The deployment answers, and tells a token it accepts from none. */
export const SERVICE_CHECKS: readonly Check[] = [
  {
    id: 'health',
    title: 'health',
    auth: false,
    async run(state) {
      const health = await state.client.health();
      expect(health.status === 'ok', `status is "${health.status}"`);
      state.deployment = { storage: health.storage, metadata: health.metadata };
      return `ok (storage: ${health.storage}, metadata: ${health.metadata})`;
    },
  },
  {
    id: 'ready',
    title: 'ready (storage and metadata answer)',
    auth: false,
    async run(state) {
      const ready = await state.client.ready();
      return `${ready.status} (storage: ${ready.storage}, metadata: ${ready.metadata})`;
    },
  },
  {
    id: 'token',
    title: 'token accepted',
    auth: true,
    async run(state) {
      await state.client.listEchoes({ limit: 1 });
      return 'GET /echoes answered 200';
    },
  },
  {
    id: 'no-token',
    title: 'no token is refused',
    auth: false,
    run: (state) =>
      expectError(state.client.send('GET', '/echoes', { token: null }), 401, 'UNAUTHORIZED'),
  },
];
