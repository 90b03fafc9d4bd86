/**
 * Part 4: the server on S3 + DynamoDB (moto_server) under light load; moto_server stops
 * mid-run and starts again on the same port (in memory: bucket and table made again).
 * Measures the time from the stop to the first 503, every answer during the outage (503 with
 * Retry-After within 1 s), /health/ready, and the time to recover. Then the same backend
 * frozen (SIGSTOP): answers must come from BACKEND_TIMEOUT_MS (1 s), not the SDK's timeouts.
 */
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import {
  CreateTableCommand,
  DynamoDBClient,
  UpdateTimeToLiveCommand,
} from '@aws-sdk/client-dynamodb';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { echoTableDefinition, TTL_ATTRIBUTE } from '../../src/metadata/dynamodb/table.ts';
import { AWS_TEST_ENV } from '../../test/backends/aws-account.ts';
import { motoAvailable } from '../../test/backends/s3-moto.ts';
import { freePort } from '../../test/support/free-port.ts';
import { devToken, flow, fmt, Recorder, serve, sleep, type Target } from './common.ts';

const BUCKET = 'echoes-reliability';
const TABLE = 'echoes-reliability';
const BEFORE_MS = 5000;
const OUTAGE_MS = Number(process.env.RELIABILITY_OUTAGE_SECONDS ?? 10) * 1000;
const AFTER_MS = 5000;
const FREEZE_MS = 8000;
/** BACKEND_TIMEOUT_MS's default, plus the time to answer. */
const FROZEN_ANSWER_MS = 1500;

interface Probe {
  readonly what: 'list' | 'ready';
  readonly start: number;
  readonly end: number;
  readonly status: number | 'network error';
  readonly retryAfter: boolean;
}

async function startMotoOn(port: number): Promise<ChildProcess> {
  const child = spawn('moto_server', ['-H', '127.0.0.1', '-p', String(port)], {
    stdio: 'ignore',
    env: { ...process.env, ...AWS_TEST_ENV },
  });
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`moto_server exited with ${child.exitCode}`);
    try {
      if ((await fetch(`http://127.0.0.1:${port}/moto-api/`)).status < 500) return child;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`moto_server did not start on port ${port}`);
    await sleep(50);
  }
}

async function makeBucketAndTable(endpoint: string): Promise<void> {
  const credentials = { accessKeyId: 'testing', secretAccessKey: 'testing' };
  const s3 = new S3Client({ region: 'us-east-1', endpoint, forcePathStyle: true, credentials });
  const ddb = new DynamoDBClient({ region: 'us-east-1', endpoint, credentials });
  await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
  await ddb.send(new CreateTableCommand(echoTableDefinition(TABLE)));
  await ddb.send(
    new UpdateTimeToLiveCommand({
      TableName: TABLE,
      TimeToLiveSpecification: { AttributeName: TTL_ATTRIBUTE, Enabled: true },
    }),
  );
  s3.destroy();
  ddb.destroy();
}

async function stopMoto(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await exited;
}

export async function outagePart(): Promise<{ markdown: string; targets: Target[] }> {
  if (!motoAvailable()) {
    return {
      markdown:
        '### 4. Backend outage\n\nNot run: moto_server is not installed (pip install "moto[server]").',
      targets: [
        { part: 'outage', target: 'moto_server installed', measured: 'missing', pass: false },
      ],
    };
  }
  const port = await freePort();
  const endpoint = `http://127.0.0.1:${port}`;
  let moto = await startMotoOn(port);
  await makeBucketAndTable(endpoint);
  const dataDir = mkdtempSync(join(tmpdir(), 'echoes-rel-outage-'));
  const server = await serve(dataDir, {
    ...AWS_TEST_ENV,
    S3_BUCKET_NAME: BUCKET,
    S3_ENDPOINT: endpoint,
    S3_FORCE_PATH_STYLE: 'true',
    DYNAMODB_TABLE_NAME: TABLE,
    DYNAMODB_ENDPOINT: endpoint,
    // Production's value (the test helpers underneath default to a generous one for busy CI machines).
    BACKEND_TIMEOUT_MS: '1000',
  });
  try {
    const t0 = performance.now();
    const now = (): number => performance.now() - t0;
    const probes: Probe[] = [];
    let done = false;
    const probeLoop = async (
      what: Probe['what'],
      path: string,
      token: string | undefined,
      everyMs: number,
    ): Promise<void> => {
      while (!done) {
        const start = now();
        let status: Probe['status'] = 'network error';
        let retryAfter = false;
        try {
          const res = await fetch(`${server.url}${path}`, {
            headers: token ? { authorization: `Bearer ${token}` } : {},
            signal: AbortSignal.timeout(120_000),
          });
          await res.arrayBuffer();
          status = res.status;
          retryAfter = res.headers.has('retry-after');
        } catch {
          // recorded as a network error
        }
        probes.push({ what, start, end: now(), status, retryAfter });
        await sleep(everyMs);
      }
    };
    const tokens = await Promise.all([0, 1, 2, 3].map((i) => devToken(server.url, `outage-${i}`)));
    const rec = new Recorder();
    const flowsOk: number[] = [];
    const load = Promise.all([
      probeLoop('list', '/echoes?limit=5', tokens[0], 100),
      probeLoop('ready', '/health/ready', undefined, 250),
      ...tokens.map(async (token) => {
        for (let n = 1; !done; n++) {
          try {
            const before = rec.flows;
            await flow(server.url, token, n, rec, { deleteEvery: 3, stopped: () => done });
            if (rec.flows > before) flowsOk.push(now());
          } catch {
            rec.networkErrors++;
          }
          await sleep(200);
        }
      }),
    ]);
    await sleep(BEFORE_MS);
    const stopAt = now();
    await stopMoto(moto);
    const stoppedAt = now();
    await sleep(OUTAGE_MS);
    const restartAt = now();
    moto = await startMotoOn(port);
    await makeBucketAndTable(endpoint);
    const readyAt = now();
    await sleep(AFTER_MS);
    // A backend that hangs instead of refusing (SIGSTOP: the kernel still accepts connections):
    // only BACKEND_TIMEOUT_MS stops a request from waiting for the SDK's 30 s per attempt.
    const freezeAt = now();
    moto.kill('SIGSTOP');
    await sleep(FREEZE_MS);
    const thawAt = now();
    moto.kill('SIGCONT');
    await sleep(AFTER_MS);
    done = true;
    await load;
    // Wholly inside the freeze: one that began before it may still have been answered.
    const frozen = probes.filter(
      (p) => p.what === 'list' && p.start >= freezeAt && p.end <= thawAt,
    );
    const frozenMax = Math.max(0, ...frozen.map((p) => p.end - p.start));
    const frozenFast503 = frozen.filter(
      (p) => p.status === 503 && p.retryAfter && p.end - p.start <= FROZEN_ANSWER_MS,
    ).length;

    const during = probes.filter((p) => p.start >= stoppedAt && p.end <= restartAt);
    const lists = during.filter((p) => p.what === 'list');
    const readies = during.filter((p) => p.what === 'ready');
    const first503 = probes.find((p) => p.start >= stopAt && p.status === 503);
    const toFirst503 = first503 ? first503.end - stopAt : Number.POSITIVE_INFINITY;
    const bad = lists.filter((p) => p.status !== 503 || !p.retryAfter || p.end - p.start > 1000);
    const maxMs = Math.max(0, ...during.map((p) => p.end - p.start));
    const readyBad = readies.filter((p) => p.status !== 503);
    const recovered = probes.find(
      (p) => p.what === 'list' && p.start >= restartAt && p.status === 200,
    );
    const readyAgain = probes.find(
      (p) => p.what === 'ready' && p.start >= restartAt && p.status === 200,
    );
    const flowAgain = flowsOk.find((t) => t >= readyAt);
    const rel = (t: number | undefined): string =>
      t === undefined ? 'never' : `${fmt(t - readyAt)} ms`;
    const statuses = (ps: Probe[]): string => {
      const m = new Map<string, number>();
      for (const p of ps) m.set(String(p.status), (m.get(String(p.status)) ?? 0) + 1);
      return [...m.entries()].map(([s, n]) => `${s}: ${n}`).join(', ') || 'none';
    };
    console.log(
      `frozen backend: ${statuses(frozen)}, ${frozenFast503}/${frozen.length} fast 503, slowest ${fmt(frozenMax)} ms`,
    );
    console.log(
      `outage: first 503 ${fmt(toFirst503)} ms after the stop; during: list ${statuses(lists)}, ready ${statuses(readies)}, max ${fmt(maxMs)} ms, ${bad.length} answers not 503+Retry-After within 1 s; recovered list ${rel(recovered?.end)}, ready ${rel(readyAgain?.end)}, flow ${rel(flowAgain)}`,
    );
    const markdown = [
      `### 4. Backend outage: S3 + DynamoDB on moto_server, stopped for ${OUTAGE_MS / 1000} s`,
      '',
      'Light load: 4 clients run whole flows (200 ms apart), one GET /echoes every 100 ms and GET /health/ready every 250 ms.',
      `After ${BEFORE_MS / 1000} s moto_server gets SIGKILL; ${OUTAGE_MS / 1000} s later it starts again on the same port and, as it keeps`,
      'everything in memory, the bucket and the table are made again (the echoes from before are gone with it: this part measures',
      'availability, not durability).',
      '',
      `- Time from the stop to the first 503: **${fmt(toFirst503)} ms**.`,
      `- GET /echoes during the outage: ${statuses(lists)}; ${lists.length - bad.length}/${lists.length} were 503 with Retry-After within 1 s; slowest answer during the outage ${fmt(maxMs)} ms.`,
      `- GET /health/ready during the outage: ${statuses(readies)}.`,
      `- Flow steps' non-2xx over the whole run: ${rec.non2xx()}; network errors ${rec.networkErrors}.`,
      `- Recovery, from the bucket and table being back: GET /echoes 200 after ${rel(recovered?.end)}, /health/ready 200 after ${rel(readyAgain?.end)}, a whole flow acknowledged after ${rel(flowAgain)} (restart of moto_server itself took ${fmt(readyAt - restartAt)} ms).`,
      `- A frozen backend instead (moto_server under SIGSTOP for ${FREEZE_MS / 1000} s): GET /echoes sent and answered during the freeze: ${statuses(frozen)};` +
        ` ${frozenFast503}/${frozen.length} were a 503 with Retry-After within ${fmt(FROZEN_ANSWER_MS)} ms; the slowest took ${fmt(frozenMax)} ms` +
        ' (BACKEND_TIMEOUT_MS, default 1000, bounds each call of a request to S3 or DynamoDB, retries included).',
      maxMs > 1000
        ? `\nAnswers took up to ${fmt(maxMs)} ms during the outage: a refused connection is retried by the SDK (3 attempts, src/support/aws/credentials.ts AWS_HTTP) within BACKEND_TIMEOUT_MS.`
        : '',
    ].join('\n');
    return {
      markdown,
      targets: [
        {
          part: 'outage',
          target: 'first 503 within 1 s of the stop',
          measured: `${fmt(toFirst503)} ms`,
          pass: toFirst503 <= 1000,
        },
        {
          part: 'outage',
          target: 'answers during the outage: 503 with Retry-After, each within 1 s',
          measured: `${lists.length - bad.length}/${lists.length}, slowest ${fmt(maxMs)} ms`,
          pass: lists.length > 0 && bad.length === 0,
        },
        {
          part: 'outage',
          target: '/health/ready 503 during the outage',
          measured: statuses(readies),
          pass: readies.length > 0 && readyBad.length === 0,
        },
        {
          part: 'outage',
          target: `frozen backend (SIGSTOP): 503 with Retry-After, each within ${fmt(FROZEN_ANSWER_MS)} ms`,
          measured: `${frozenFast503}/${frozen.length}, slowest ${fmt(frozenMax)} ms`,
          pass: frozen.length > 0 && frozenFast503 === frozen.length,
        },
        {
          part: 'outage',
          target: 'recovers (2xx again) after moto_server is back',
          measured: `list ${rel(recovered?.end)}, flow ${rel(flowAgain)}`,
          pass: recovered !== undefined && flowAgain !== undefined,
        },
      ],
    };
  } finally {
    server.child.kill('SIGTERM');
    await server.exited;
    await stopMoto(moto).catch(() => undefined);
    rmSync(dataDir, { recursive: true, force: true });
  }
}
