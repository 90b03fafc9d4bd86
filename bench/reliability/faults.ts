/**
 * Part 3: kill -9 of `echoes-storage serve` under load, three times, restarting on the same
 * DATA_DIR: every echo acknowledged with 201 must come back intact, and tmp/ must be empty
 * after each restart.
 */
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  checkIntact,
  devToken,
  flow,
  pool,
  Recorder,
  serve,
  sleep,
  type Acknowledged,
  type Target,
} from './common.ts';

const ROUNDS = 3;
const LOAD_SECONDS = Number(process.env.RELIABILITY_FAULT_SECONDS ?? 10);

export async function faultsPart(
  clients: number,
): Promise<{ markdown: string; targets: Target[] }> {
  const dataDir = mkdtempSync(join(tmpdir(), 'echoes-rel-faults-'));
  const tmp = join(dataDir, 'tmp');
  const acked = new Map<string, Acknowledged>();
  const rows: string[] = [];
  let lost: string[] = [];
  let tmpLeft = 0;
  try {
    for (let round = 1; round <= ROUNDS; round++) {
      const server = await serve(dataDir);
      const tmpAfterRestart = await settledTmp(tmp);
      tmpLeft += tmpAfterRestart;
      // Echoes acknowledged before earlier kills, checked on the restarted server.
      lost = await checkAll(server.url, [...acked.values()]);
      const tokens = await Promise.all(
        Array.from({ length: clients }, (_, i) => devToken(server.url, `crash-${round}-${i}`)),
      );
      const rec = new Recorder();
      let killed = false;
      const before = acked.size;
      const load = Promise.all(
        tokens.map(async (token) => {
          for (let n = 1; !killed; n++) {
            try {
              await flow(server.url, token, n, rec, {
                deleteEvery: Number.POSITIVE_INFINITY,
                stopped: () => killed,
                onAcknowledged: (e) => acked.set(e.echoId, e),
              });
            } catch {
              rec.networkErrors++;
            }
          }
        }),
      );
      await sleep(LOAD_SECONDS * 1000);
      const tmpAtKill = existsSync(tmp) ? readdirSync(tmp).length : 0;
      // Flows in flight keep going until the kill cuts them; none starts after it.
      killed = true;
      server.child.kill('SIGKILL');
      await server.exited;
      await load;
      rows.push(
        `| ${round} | ${lost.length === 0 ? 'all' : `${before - lost.length}/${before}`} intact | ${tmpAfterRestart} | ${acked.size - before} | ${tmpAtKill} | ${rec.networkErrors} |`,
      );
      console.log(
        `faults round ${round}: ${acked.size - before} acknowledged, ${tmpAtKill} files in tmp at the kill, ${rec.networkErrors} requests cut; before: ${lost.length} lost, tmp after restart ${tmpAfterRestart}`,
      );
      if (lost.length) break;
    }
    // The last kill's survivors, on one more restart.
    const server = await serve(dataDir);
    const tmpFinal = await settledTmp(tmp);
    tmpLeft += tmpFinal;
    if (lost.length === 0) lost = await checkAll(server.url, [...acked.values()]);
    rows.push(
      `| after the last kill | ${acked.size - lost.length}/${acked.size} intact | ${tmpFinal} | | | |`,
    );
    server.child.kill('SIGTERM');
    await server.exited;
    for (const l of lost.slice(0, 10)) console.log(`  lost: ${l}`);
    const markdown = [
      `### 3. Faults: kill -9 under load, ${ROUNDS} times on one DATA_DIR`,
      '',
      `${clients} clients run whole flows (no deletes) for ${LOAD_SECONDS} s, then the server gets SIGKILL with requests in flight and is started`,
      'again on the same DATA_DIR. After each restart every echo acknowledged so far (201 received) is fetched, downloaded through',
      'audio_url and its SHA-256 compared with the uploaded bytes, and DATA_DIR/tmp is listed once the start-up sweep has run.',
      '',
      '| round | echoes acknowledged before it | files in tmp/ after restart | acknowledged in the round | files in tmp/ at the kill | requests cut by the kill |',
      '|---|---|---|---|---|---|',
      ...rows,
    ].join('\n');
    return {
      markdown,
      targets: [
        {
          part: 'faults',
          target: 'every acknowledged echo intact after 3 kills',
          measured: `${acked.size - lost.length}/${acked.size}`,
          pass: lost.length === 0 && acked.size > 0,
        },
        {
          part: 'faults',
          target: 'nothing left in DATA_DIR/tmp after restart',
          measured: `${tmpLeft} files`,
          pass: tmpLeft === 0,
        },
      ],
    };
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
}

async function checkAll(url: string, echoes: Acknowledged[]): Promise<string[]> {
  const problems: string[] = [];
  await pool(echoes, 8, async (e) => {
    const p = await checkIntact(url, e);
    if (p) problems.push(p);
  });
  return problems;
}

/** Files in tmp/ once the server's start-up sweep has had up to 5 s to run. */
async function settledTmp(tmp: string): Promise<number> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const n = existsSync(tmp) ? readdirSync(tmp).length : 0;
    if (n === 0 || Date.now() > deadline) return n;
    await sleep(100);
  }
}
