import { createReadStream, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FfmpegAudioProbe } from '../src/audio/ffmpeg/probe.ts';
import { signDevToken } from '../src/auth/tokens.ts';
import { UploadRejected } from '../src/domain/rejections.ts';
import {
  decoderCount,
  ffmpeg,
  median,
  percentile,
  procCpu,
  timed,
  upload,
  type Sample,
} from './audio-measure.ts';
import { startBenchServer, stopBenchServer } from './harness.ts';

/**
 * Part of the audio-decode bench (issue 23): a decode bomb refused before it is decoded, and the
 * API's own latency while every decoder slot is busy.
 */
const REFUSALS = 10;
const REFUSAL_TARGET_S = 1;
const HEALTH_REQUESTS = 200;
/** Pause between two GET /health, so the 200 spread over several decodes. */
const HEALTH_GAP_MS = 20;
const HEALTH_TARGET_MS = 50;
const SLOTS = 2;
/** More users than slots: with AUDIO_DECODE_PER_USER 1 (half of 2) each runs one decode at a time. */
const USERS = 3;
const POSTS_PER_USER = 4;

export interface LimitsFigures {
  markdown: string;
  refusalMaxS: number;
  healthP99Ms: number;
}

export async function decodeLimits(dir: string): Promise<LimitsFigures> {
  const bomb = join(dir, 'bomb-192k-7.1.flac');
  const long = join(dir, 'silence-20min-96k-7.1.flac');
  const opus = join(dir, 'tone-20min.webm');
  // Digital silence packs into constant FLAC subframes: a few bytes per block of millions of samples.
  ffmpeg(['-f', 'lavfi', '-i', 'anullsrc=r=192000:cl=7.1', '-t', '60', '-c:a', 'flac', bomb]);
  // The longest decode per byte within the limits (96 kHz, 8 channels, 20 min): 110 M frames for the
  // child to decode and measure, from half a megabyte.
  ffmpeg(['-f', 'lavfi', '-i', 'anullsrc=r=96000:cl=7.1', '-t', '1200', '-c:a', 'flac', long]);
  ffmpeg([
    '-f',
    'lavfi',
    '-i',
    'sine=frequency=440:duration=1200:sample_rate=48000',
    '-c:a',
    'libopus',
    '-b:a',
    '32k',
    opus,
  ]);
  const bombSize = statSync(bomb).size;
  const longSize = statSync(long).size;

  // (a) Refused from the stream's header, through the probe as the server calls it.
  const probe = new FfmpegAudioProbe({ concurrency: 1 });
  const refuseOnce = async (): Promise<void> => {
    try {
      await probe.probe(async () => createReadStream(bomb), {
        extension: 'flac',
        maxDurationSeconds: 1800,
        maxBytes: 100 * 1024 * 1024,
        maxSampleRate: 96000,
        maxChannels: 8,
        owner: 'bench',
      });
    } catch (err) {
      if (err instanceof UploadRejected && err.reason === 'audio_limits') return;
      throw err;
    }
    throw new Error('the 192 kHz 7.1 FLAC was accepted');
  };
  // How long one 20-minute file holds a decoder, alone: the FLAC against a 32 kbit/s opus tone.
  const oneDecode = (file: string, extension: string): Promise<Sample> =>
    timed(async () => {
      await probe.probe(async () => createReadStream(file), {
        extension,
        maxDurationSeconds: 1800,
        maxBytes: 100 * 1024 * 1024,
        maxSampleRate: 96000,
        maxChannels: 8,
        owner: 'bench',
      });
    });
  const flacDecode = await oneDecode(long, 'flac');
  const opusDecode = await oneDecode(opus, 'webm');
  console.log(
    `20 min alone: 96 kHz 7.1 FLAC silence ${flacDecode.wall.toFixed(1)} s wall, ${flacDecode.children.toFixed(1)} s child CPU; 32 kbit/s opus ${opusDecode.wall.toFixed(1)} s wall, ${opusDecode.children.toFixed(1)} s child CPU`,
  );

  await refuseOnce(); // warm-up
  const refusals: Sample[] = [];
  for (let i = 0; i < REFUSALS; i++) refusals.push(await timed(refuseOnce));
  const walls = refusals.map((r) => r.wall);
  const refusalMaxS = Math.max(...walls);
  console.log(
    `192 kHz 7.1 FLAC (${bombSize} B): refused in median ${(median(walls) * 1000).toFixed(0)} ms, max ${(refusalMaxS * 1000).toFixed(0)} ms`,
  );

  // (b) GET /health while every decoder slot decodes 20 minutes of audio.
  const dataDir = mkdtempSync(join(tmpdir(), 'echoes-bench-decode-limits-'));
  const server = await startBenchServer(dataDir, {
    AUDIO_DECODE: 'on',
    AUDIO_DECODE_CONCURRENCY: String(SLOTS),
  });
  const pid = server.child.pid ?? 0;
  let health: {
    idle: number[];
    busy: number[];
    busySlots: number[];
    ownCpuS: number;
    windowS: number;
    httpRefusalMs: number;
    posts: number[];
    statuses: Map<number, number>;
  };
  try {
    const auth = async (user: string): Promise<Record<string, string>> => ({
      authorization: `Bearer ${await signDevToken(dataDir, user)}`,
    });
    const getHealth = async (): Promise<number> => {
      const t0 = performance.now();
      const res = await fetch(`${server.url}/health`);
      await res.arrayBuffer();
      if (res.status !== 200) throw new Error(`/health answered ${res.status}`);
      return performance.now() - t0;
    };
    const healthRun = async (samples: number[], slots?: number[]): Promise<void> => {
      for (let i = 0; i < HEALTH_REQUESTS; i++) {
        samples.push(await getHealth());
        slots?.push(decoderCount(pid));
        await new Promise((r) => setTimeout(r, HEALTH_GAP_MS));
      }
    };
    for (let i = 0; i < 20; i++) await getHealth(); // warm-up
    const idle: number[] = [];
    await healthRun(idle);

    // The bomb through HTTP too: POST /echoes answers 422 audio_limits.
    const bombTicket = await upload(
      server.url,
      await auth('bench-bomb'),
      readFileSync(bomb),
      'flac',
      'audio/flac',
    );
    const t0 = performance.now();
    const refused = await fetch(`${server.url}/echoes`, {
      method: 'POST',
      headers: { ...(await auth('bench-bomb')), 'content-type': 'application/json' },
      body: JSON.stringify({ echo_id: bombTicket.echo_id }),
    });
    const refusedBody = await refused.text();
    const httpRefusalMs = performance.now() - t0;
    if (refused.status !== 422 || !refusedBody.includes('MAX_AUDIO_SAMPLE_RATE')) {
      throw new Error(
        `POST /echoes of the 192 kHz FLAC answered ${refused.status}: ${refusedBody}`,
      );
    }

    // Every upload is stored before the window, so that only the decodes run in it.
    const longBytes = readFileSync(long);
    const users = await Promise.all(
      Array.from({ length: USERS }, (_, u) => auth(`bench-busy-${u}`)),
    );
    const tickets = await Promise.all(
      users.map(async (a) => {
        const list = [];
        for (let i = 0; i < POSTS_PER_USER; i++)
          list.push({
            auth: a,
            ticket: await upload(server.url, a, longBytes, 'flac', 'audio/flac'),
          });
        return list;
      }),
    );
    const posts: number[] = [];
    const statuses = new Map<number, number>();
    const inFlight = tickets.flat().map(async ({ auth: a, ticket }) => {
      const start = performance.now();
      const res = await fetch(`${server.url}/echoes`, {
        method: 'POST',
        headers: { ...a, 'content-type': 'application/json' },
        body: JSON.stringify({ echo_id: ticket.echo_id }),
      });
      await res.arrayBuffer();
      posts.push(performance.now() - start);
      statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
    });
    const deadline = Date.now() + 10_000;
    while (decoderCount(pid) < SLOTS) {
      if (Date.now() > deadline) throw new Error('the decoders did not start');
      await new Promise((r) => setTimeout(r, 5));
    }
    const busy: number[] = [];
    const busySlots: number[] = [];
    const cpu0 = procCpu(pid).own;
    const w0 = performance.now();
    await healthRun(busy, busySlots);
    const windowS = (performance.now() - w0) / 1000;
    const ownCpuS = procCpu(pid).own - cpu0;
    await Promise.all(inFlight);
    health = { idle, busy, busySlots, ownCpuS, windowS, httpRefusalMs, posts, statuses };
  } finally {
    await stopBenchServer(server);
    rmSync(dataDir, { recursive: true, force: true });
  }

  const { idle, busy, busySlots, ownCpuS, windowS, httpRefusalMs, posts, statuses } = health;
  const ms = (n: number): string => n.toFixed(1);
  const healthP99Ms = percentile(busy, 99);
  const allBusy = busySlots.filter((n) => n >= SLOTS).length;
  const statusText = [...statuses.entries()]
    .sort()
    .map(([s, n]) => `${s}: ${n}`)
    .join(', ');
  console.log(
    `/health idle p50 ${ms(percentile(idle, 50))} p99 ${ms(percentile(idle, 99))}; busy p50 ${ms(percentile(busy, 50))} p99 ${ms(healthP99Ms)} max ${ms(Math.max(...busy))} ms; ${SLOTS} decoders alive at ${allBusy} of ${busySlots.length} answers; server own CPU ${(ownCpuS * 1000).toFixed(0)} ms in ${windowS.toFixed(1)} s; POSTs ${statusText}, p50 ${(percentile(posts, 50) / 1000).toFixed(1)} s`,
  );
  const pass = (ok: boolean): string => (ok ? '**pass**' : '**FAIL**');
  const markdown = `### Decoding limits (issue 23)

**A decode bomb refused before decoding.** 60 s of 192 kHz 7.1 silence in FLAC (\`anullsrc=r=192000:cl=7.1\`), ${(bombSize / 1024).toFixed(1)} KiB
(${((192000 * 8 * 60 * 2) / 1e6).toFixed(0)} MB as 16-bit PCM), through \`FfmpegAudioProbe.probe\` with \`maxSampleRate: 96000, maxChannels: 8\`,
${REFUSALS} times after a warm-up: refused (\`audio_limits\`) in median ${(median(walls) * 1000).toFixed(0)} ms wall, max ${(refusalMaxS * 1000).toFixed(0)} ms
(${(median(refusals.map((r) => r.children)) * 1000).toFixed(0)} ms of the child's CPU, ${(median(refusals.map((r) => r.node)) * 1000).toFixed(0)} ms of Node's).
Through the server, \`POST /echoes\` of the same upload answered 422 in ${httpRefusalMs.toFixed(0)} ms.
Target under ${REFUSAL_TARGET_S} s: ${pass(refusalMaxS < REFUSAL_TARGET_S)}.

**\`GET /health\` while every decoder slot is busy.** The bench server with \`AUDIO_DECODE=on\`, \`AUDIO_DECODE_CONCURRENCY=${SLOTS}\`
(so \`AUDIO_DECODE_PER_USER\` 1); ${USERS} users each stored ${POSTS_PER_USER} uploads of 20 minutes of 96 kHz 7.1 FLAC silence
(${(longSize / 1024).toFixed(0)} KiB, at the limits of MAX_AUDIO_SAMPLE_RATE and MAX_AUDIO_CHANNELS). Alone, one such file holds a decoder
${flacDecode.wall.toFixed(1)} s for ${flacDecode.children.toFixed(1)} s of the child's CPU (one thread each for decoding and filtering: a decoder slot is one core),
against ${opusDecode.wall.toFixed(1)} s and ${opusDecode.children.toFixed(1)} s for 20 minutes of 32 kbit/s opus (${(statSync(opus).size / 1e6).toFixed(1)} MB).
The ${USERS * POSTS_PER_USER} POST /echoes were sent at once; once ${SLOTS} decoders ran, ${HEALTH_REQUESTS} GET /health one after the other,
${HEALTH_GAP_MS} ms apart, from the bench process (which shares the 2 cores with the server and both decoders).
At ${allBusy} of the ${busySlots.length} answers the server had ${SLOTS} ffmpeg children alive (counted from \`/proc\` after each answer)${
    allBusy < busySlots.length
      ? `;
at the others one slot was presumably between two decodes (a slot stays taken while the next upload is copied to the decoder's temporary file and its child starts)`
      : ''
  }.

| decoders | GET /health | p50 ms | p99 ms | max ms |
|---|---|---|---|---|
| idle (same server, before) | ${idle.length} | ${ms(percentile(idle, 50))} | ${ms(percentile(idle, 99))} | ${ms(Math.max(...idle))} |
| ${SLOTS} of ${SLOTS} busy | ${busy.length} | ${ms(percentile(busy, 50))} | ${ms(healthP99Ms)} | ${ms(Math.max(...busy))} |

Target p99 under ${HEALTH_TARGET_MS} ms with every slot busy: ${pass(healthP99Ms < HEALTH_TARGET_MS)}.
The server process's own CPU (\`/proc/<pid>/stat\` fields 14-15, its decoders not included) over the ${windowS.toFixed(1)} s window:
${(ownCpuS * 1000).toFixed(0)} ms (${((ownCpuS / windowS) * 100).toFixed(1)}% of one core), for ${busy.length} /health answers, copying the next uploads for the decoders and reading their output.
The POST /echoes: ${statusText}; each took ${(percentile(posts, 50) / 1000).toFixed(1)} s at the median (queue wait included), ${(Math.max(...posts) / 1000).toFixed(1)} s at most.`;
  return { markdown, refusalMaxS, healthP99Ms };
}
