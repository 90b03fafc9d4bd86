// Child process of the HTTP benches (bench/harness.ts): the real server plus bare routes, so
// the load generator and the server do not share one event loop.
import { loadConfig } from '../src/app/config.ts';
import { createServer } from '../src/app/server.ts';

const config = loadConfig({ ...process.env, LOG_LEVEL: 'silent' });
const { app } = await createServer(config, false);
// Same HTTP stack and a JSON body or a query string, none of the work: the baselines the
// ratios are taken against.
app.post('/bench/bare', async (request) => ({ ok: true, received: typeof request.body }));
app.get('/bench/bare', async (request) => ({ ok: true, query: typeof request.query }));
await app.listen({ port: config.port, host: '127.0.0.1' });
process.send?.('ready');
process.on('message', async (m) => {
  // CPU time of the server process, so the bench can report cost per request beside req/s.
  if (m === 'cpu') process.send?.({ cpu: process.cpuUsage() });
  if (m === 'stop') {
    await app.close();
    process.exit(0);
  }
});
// Lets `node --cpu-prof` write its profile when the server is stopped by hand.
process.once('SIGINT', () => void app.close().then(() => process.exit(0)));
