// Child process of list.bench.ts: the real server on an already seeded DATA_DIR, plus a bare
// GET route, so the load generator and the server do not share one event loop.
import { loadConfig } from '../src/config.ts';
import { createServer } from '../src/server.ts';

const config = loadConfig({ ...process.env, LOG_LEVEL: 'silent' });
const { app } = await createServer(config, false);
// Same HTTP stack and a GET with a query string, none of the work: the baseline.
app.get('/bench/bare', async (request) => ({ ok: true, query: typeof request.query }));
await app.listen({ port: config.port, host: '127.0.0.1' });
process.send?.('ready');
process.on('message', async (m) => {
  if (m === 'cpu') process.send?.({ cpu: process.cpuUsage() });
  if (m === 'stop') {
    await app.close();
    process.exit(0);
  }
});
process.once('SIGINT', () => void app.close().then(() => process.exit(0)));
