import { execFileSync } from 'node:child_process';
import { createReadStream, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { FfmpegAudioProbe } from '../src/audio/ffmpeg/probe.ts';
import { chunkFrames, peakFilterGraph } from '../src/audio/ffmpeg/peak-chunks.ts';
import { signDevToken } from '../src/auth/tokens.ts';
import {
  CLK_TCK,
  ffmpeg,
  median,
  percentile,
  procCpu,
  spawnAndWait,
  timed,
  upload,
  type Sample,
} from './audio-measure.ts';
import { decodeLimits, type LimitsFigures } from './decode-limits.ts';
import { startBenchServer, stopBenchServer, type BenchServer } from './harness.ts';
import { writeSection } from './report.ts';

/**
 * What decoding every upload costs. (1) CPU of FfmpegAudioProbe on 60 s opus webms and a 60 s
 * wav, against a bare `ffmpeg ... -f null -` decode of the same file; (2) the decoding limits
 * (bench/decode-limits.ts); (3) POST /echoes latency for a ~1 MB opus webm through the real
 * server with AUDIO_DECODE=on and =off, the two servers measured in alternating blocks so that
 * the machine's noise falls on both alike.
 */
const RUNS = 7;
/** Probes per run: a 60 s wav decodes in a few clock ticks, too coarse to time one by one. */
const PROBES_PER_RUN = 5;
const REQUESTS = Number(process.env.BENCH_AUDIO_REQUESTS ?? 100);
const CONCURRENCIES = [1, 4] as const;
/** Blocks per mode and concurrency; on and off alternate block by block. */
const BLOCKS = 4;
const MAX_BYTES = 100 * 1024 * 1024;
/** Issue 23: decoder children plus Node, per 60 s opus echo, against a bare decode of the same file. */
const CPU_RATIO_TARGET = 1.3;

/** The baseline: ffmpeg decoding the file and throwing the audio away, nothing else. */
function bareDecode(file: string): Promise<void> {
  return spawnAndWait('ffmpeg', ['-v', 'error', '-nostdin', '-i', file, '-f', 'null', '-']);
}

/** The baseline plus the probe's peak graph: what measuring the peaks costs the child (every file here is 48 kHz). */
function bareWithPeaks(file: string, audioSeconds: number): Promise<void> {
  const graph = peakFilterGraph(chunkFrames(48_000, audioSeconds, statSync(file).size));
  return spawnAndWait('ffmpeg', [
    '-v',
    'error',
    '-nostdin',
    '-i',
    file,
    '-af',
    graph,
    '-f',
    'null',
    '-',
  ]);
}

/** Starting ffmpeg and doing nothing: the floor under every probe and every bare decode. */
function startOnly(): Promise<void> {
  return spawnAndWait('ffmpeg', ['-version']);
}

interface Throughput {
  name: string;
  audioSeconds: number;
  probe: Sample;
  bare: Sample;
  /** startOnly(), measured in the same runs. */
  floor: Sample;
  /** bareWithPeaks(), measured in the same runs. */
  peaks: Sample;
  /** (probe children + probe Node) / bare children, median of the per-run ratios. */
  ratio: number;
}

async function throughput(
  name: string,
  file: string,
  extension: string,
  audioSeconds: number,
): Promise<Throughput> {
  // One at a time: the figure is the cost of one decode, not how two cores share several.
  const probe = new FfmpegAudioProbe({ concurrency: 1, queuePerUser: PROBES_PER_RUN });
  const once = async (): Promise<void> => {
    const facts = await probe.probe(async () => createReadStream(file), {
      extension,
      maxDurationSeconds: 1800,
      maxBytes: MAX_BYTES,
      owner: 'bench',
    });
    if (Math.abs((facts.durationSeconds ?? 0) - audioSeconds) > 0.1)
      throw new Error(`${name}: measured ${facts.durationSeconds} s, expected ${audioSeconds} s`);
  };
  const batch = (work: () => Promise<void>) => async (): Promise<void> => {
    for (let i = 0; i < PROBES_PER_RUN; i++) await work();
  };
  await once(); // warm-up: page cache, shared libraries, JIT
  await bareDecode(file);
  await startOnly();
  const probes: Sample[] = [];
  const bares: Sample[] = [];
  const floors: Sample[] = [];
  const peaks: Sample[] = [];
  // Interleaved, so a busy moment on the machine lands on both.
  for (let r = 0; r < RUNS; r++) {
    probes.push(await timed(batch(once)));
    bares.push(await timed(batch(() => bareDecode(file))));
    floors.push(await timed(batch(startOnly)));
    peaks.push(await timed(batch(() => bareWithPeaks(file, audioSeconds))));
  }
  const med = (samples: Sample[]): Sample => ({
    wall: median(samples.map((s) => s.wall)) / PROBES_PER_RUN,
    children: median(samples.map((s) => s.children)) / PROBES_PER_RUN,
    node: median(samples.map((s) => s.node)) / PROBES_PER_RUN,
  });
  const ratio = median(probes.map((p, r) => (p.children + p.node) / (bares[r]?.children ?? NaN)));
  const result = {
    name,
    audioSeconds,
    probe: med(probes),
    bare: med(bares),
    floor: med(floors),
    peaks: med(peaks),
    ratio,
  };
  const p = result.probe;
  const ms = (s: number): string => (s * 1000).toFixed(0);
  console.log(
    `${name}: probe ${ms(p.children)} ms child + ${ms(p.node)} ms Node CPU, ${ms(p.wall)} ms wall; bare ffmpeg ${ms(result.bare.children)} ms CPU, ${ms(result.bare.wall)} ms wall; with the peak graph ${ms(result.peaks.children)} ms; ffmpeg -version ${ms(result.floor.children)} ms; ratio ${ratio.toFixed(2)}`,
  );
  return result;
}

interface EchoBody {
  duration_seconds?: number | null;
  waveform?: number[] | null;
}

interface Mode {
  name: 'on' | 'off';
  server: BenchServer;
  dataDir: string;
  /**
   * One user per concurrent client: decodes are shared user by user (AUDIO_DECODE_PER_USER, half
   * the slots by default), and the figure is the server's, not one user's share of it.
   */
  auths: Record<string, string>[];
}

interface Latency {
  mode: 'on' | 'off';
  concurrency: number;
  ms: number[];
  errors: number;
  /** Server process and its decoders, per upload cycle (upload-url + PUT + POST /echoes). */
  cpuMs: number[];
}

/** One echo: upload-url and PUT untimed, then the timed POST /echoes. */
async function cycle(
  mode: Mode,
  auth: Record<string, string>,
  bytes: Buffer,
): Promise<{ ms: number; ok: boolean; body: EchoBody }> {
  const ticket = await upload(mode.server.url, auth, bytes, 'webm', 'audio/webm;codecs=opus');
  const t0 = performance.now();
  const post = await fetch(`${mode.server.url}/echoes`, {
    method: 'POST',
    headers: { ...auth, 'content-type': 'application/json' },
    body: JSON.stringify({ echo_id: ticket.echo_id }),
  });
  const body = (await post.json()) as EchoBody;
  return { ms: performance.now() - t0, ok: post.status === 201, body };
}

async function block(
  mode: Mode,
  bytes: Buffer,
  count: number,
  concurrency: number,
  into: Latency,
): Promise<void> {
  const pid = mode.server.child.pid ?? 0;
  const cpu = (): number => {
    const c = procCpu(pid);
    return c.own + c.children;
  };
  const before = cpu();
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async (_, worker) => {
      const auth = mode.auths[worker] ?? {};
      while (next < count) {
        next++;
        const r = await cycle(mode, auth, bytes);
        into.ms.push(r.ms);
        if (!r.ok) into.errors++;
      }
    }),
  );
  into.cpuMs.push(((cpu() - before) * 1000) / count);
}

async function startMode(name: 'on' | 'off', bytes: Buffer): Promise<Mode> {
  const dataDir = mkdtempSync(join(tmpdir(), `echoes-bench-decode-${name}-`));
  const server = await startBenchServer(dataDir, { AUDIO_DECODE: name });
  const users = Math.max(...CONCURRENCIES);
  const auths = await Promise.all(
    Array.from({ length: users }, async (_, i) => ({
      authorization: `Bearer ${await signDevToken(dataDir, `bench-user-${i}`)}`,
    })),
  );
  const mode = { name, server, dataDir, auths };
  const health = (await (await fetch(`${server.url}/health`)).json()) as { decoder?: string };
  console.log(`AUDIO_DECODE=${name}: /health decoder "${health.decoder}"`);
  // The echo must be what the mode claims: measured and drawn when on, headers only when off.
  const { ok, body } = await cycle(mode, auths[0] ?? {}, bytes);
  const decoded = typeof body.duration_seconds === 'number' && Array.isArray(body.waveform);
  if (!ok || decoded !== (name === 'on'))
    throw new Error(`AUDIO_DECODE=${name}: unexpected echo ${JSON.stringify(body).slice(0, 300)}`);
  for (const auth of auths) await cycle(mode, auth, bytes); // warm-up
  return mode;
}

export async function run(): Promise<void> {
  const ffmpegVersion =
    execFileSync('ffmpeg', ['-version'], { encoding: 'utf8' })
      .split('\n')[0]
      ?.replace(/ Copyright.*$/, '') ?? 'unknown';
  const dir = mkdtempSync(join(tmpdir(), 'echoes-bench-decode-'));
  const files = {
    opus: join(dir, 'tone.webm'),
    wav: join(dir, 'tone.wav'),
    echo: join(dir, 'echo.webm'),
  };
  const sine = ['-f', 'lavfi', '-i', 'sine=frequency=440:duration=60:sample_rate=48000'];
  let decode: Throughput[];
  let limits: LimitsFigures;
  const latencies: Latency[] = [];
  let echoSize = 0;
  try {
    ffmpeg([...sine, '-c:a', 'libopus', '-b:a', '32k', files.opus]);
    ffmpeg([...sine, '-ac', '1', '-c:a', 'pcm_s16le', files.wav]);
    // Constant bitrate, so a tone weighs what speech would: 60 s at 128 kbit/s is about 1 MB.
    ffmpeg([...sine, '-c:a', 'libopus', '-b:a', '128k', '-vbr', 'off', files.echo]);

    decode = [
      await throughput('60 s opus webm (32 kbit/s, 48 kHz mono)', files.opus, 'webm', 60),
      await throughput('60 s wav (16-bit, 48 kHz mono)', files.wav, 'wav', 60),
      await throughput(
        '60 s opus webm (128 kbit/s constant, the POST /echoes file below)',
        files.echo,
        'webm',
        60,
      ),
    ];
    limits = await decodeLimits(dir);

    const echo = readFileSync(files.echo);
    echoSize = echo.length;
    const modes = [await startMode('on', echo), await startMode('off', echo)];
    try {
      for (const concurrency of CONCURRENCIES) {
        const rows = modes.map(
          (m): Latency => ({ mode: m.name, concurrency, ms: [], errors: 0, cpuMs: [] }),
        );
        for (let b = 0; b < BLOCKS; b++) {
          for (const [i, m] of modes.entries()) {
            const row = rows[i];
            if (row) await block(m, echo, Math.ceil(REQUESTS / BLOCKS), concurrency, row);
          }
        }
        for (const r of rows) {
          console.log(
            `POST /echoes, decoding ${r.mode}, concurrency ${concurrency}: p50 ${percentile(r.ms, 50).toFixed(1)} ms, p99 ${percentile(r.ms, 99).toFixed(1)} ms, ${r.ms.length} requests, ${r.errors} errors`,
          );
        }
        latencies.push(...rows);
      }
    } finally {
      for (const m of modes) {
        await stopBenchServer(m.server);
        rmSync(m.dataDir, { recursive: true, force: true });
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }

  const ms = (seconds: number): string => (seconds * 1000).toFixed(0);
  const decodeTable = decode
    .map((d) => {
      const p = d.probe;
      return `| ${d.name} | ${ms(p.children)} | ${ms(p.node)} | ${ms(p.wall)} | ${ms(d.bare.children)} | ${ms(d.bare.wall)} | ${ms(d.peaks.children)} | ${ms(d.floor.children)} | ${d.ratio.toFixed(2)} |`;
    })
    .join('\n');

  const fmt = (n: number): string => n.toFixed(1);
  const latencyTable = CONCURRENCIES.map((c) => {
    const on = latencies.find((l) => l.mode === 'on' && l.concurrency === c);
    const off = latencies.find((l) => l.mode === 'off' && l.concurrency === c);
    if (!on || !off) return '';
    const row = (l: Latency, ratios: string): string =>
      `| ${c} | ${l.mode} | ${l.ms.length} | ${fmt(percentile(l.ms, 50))} | ${fmt(percentile(l.ms, 99))} | ${fmt(median(l.cpuMs))} | ${l.errors} | ${ratios} |`;
    const ratio = (p: number): string => (percentile(on.ms, p) / percentile(off.ms, p)).toFixed(1);
    return [row(off, '1.0 / 1.0'), row(on, `${ratio(50)} / ${ratio(99)}`)].join('\n');
  })
    .filter(Boolean)
    .join('\n');

  const [onC1, offC1] = [
    latencies.find((l) => l.mode === 'on' && l.concurrency === 1),
    latencies.find((l) => l.mode === 'off' && l.concurrency === 1),
  ];
  const decodeCost = onC1 && offC1 ? median(onC1.cpuMs) - median(offC1.cpuMs) : NaN;
  const [opus, wav, big] = decode;
  const bullets: string[] = [];
  if (opus && wav && big) {
    const verdict = opus.ratio <= CPU_RATIO_TARGET ? '**pass**' : '**FAIL**';
    bullets.push(
      `- Issue 23's target: a 60 s opus echo (32 kbit/s) costs ${ms(opus.probe.children)} ms of decoder CPU plus ${ms(opus.probe.node)} ms in Node, **${opus.ratio.toFixed(2)}x** the ${ms(opus.bare.children)} ms of a bare \`ffmpeg -v error -nostdin -i x.webm -f null -\` on the same file (target at most ${CPU_RATIO_TARGET}x): ${verdict}. Before the one-child decoder: 2.45x (556 ms against 226 ms).`,
    );
    bullets.push(
      `- At 128 kbit/s: ${ms(big.probe.children)} + ${ms(big.probe.node)} ms, ${big.ratio.toFixed(2)}x its bare decode; the wav: ${ms(wav.probe.children)} + ${ms(wav.probe.node)} ms, ${wav.ratio.toFixed(2)}x. One core proves about ${(60 / (opus.probe.children + opus.probe.node)).toFixed(0)} minutes of 32 kbit/s opus per minute.`,
    );
    const over = opus.probe.children + opus.probe.node - opus.bare.children;
    const graph = opus.peaks.children - opus.bare.children;
    bullets.push(
      `- Where the ${ms(over)} ms over the bare decode go (32 kbit/s opus): the peak graph (\`asetnsamples\`, \`astats\`, \`ametadata\`) added to the bare command costs ${ms(graph)} ms more, and Node ${ms(opus.probe.node)} ms (spooling, reading the child's output); the probe's other flags (verbose log, \`-xerror\`, \`-err_detect explode\`) and prlimit's exec are within the noise of these medians.`,
    );
    bullets.push(
      `- Starting ffmpeg alone (\`ffmpeg -version\`, measured in the same runs) costs ${ms(opus.floor.children)} ms of CPU: ${((opus.floor.children / opus.bare.children) * 100).toFixed(0)}% of the bare opus decode, which pays it too.`,
    );
  }
  if (onC1 && offC1) {
    bullets.push(
      `- With decoding on, POST /echoes of the 1 MB echo takes ${(percentile(onC1.ms, 50) / percentile(offC1.ms, 50)).toFixed(0)}x as long at the median (${fmt(percentile(onC1.ms, 50))} ms against ${fmt(percentile(offC1.ms, 50))} ms) and the server spends ${fmt(decodeCost)} ms more CPU per echo.`,
    );
  }
  const onC4 = latencies.find((l) => l.mode === 'on' && l.concurrency === 4);
  if (onC1 && onC4) {
    bullets.push(
      `- At concurrency 4, four users' cycles share ${cpus().length} cores and ${cpus().length} decoder slots (\`AUDIO_DECODE_CONCURRENCY\` defaults to the core count) with the load generator: the median POST with decoding on is ${fmt(percentile(onC4.ms, 50))} ms, ${(percentile(onC4.ms, 50) / percentile(onC1.ms, 50)).toFixed(1)}x its concurrency-1 figure.`,
    );
  }
  writeSection(
    'audio-decode',
    `## Audio decoding: throughput, POST /echoes with decoding on and off, limits

${ffmpegVersion}, ${cpus().length} cores. Every file is made by ffmpeg at bench time (a 440 Hz tone unless said otherwise).
Decode cost is \`FfmpegAudioProbe.probe\` (spool to a temp file, one ffmpeg child under prlimit that reads the stream's header,
gets its filter graph on stdin, decodes everything and prints per-chunk peaks) one probe at a time, median of ${RUNS} runs of ${PROBES_PER_RUN} probes;
the baseline is a bare \`ffmpeg -v error -nostdin -i FILE -f null -\` measured in the same runs, interleaved. CPU is user + system
from \`/proc/self/stat\` (child: ffmpeg, in ${CLK_TCK} Hz clock ticks; Node: the bench process, which spools the file and reads the
child's stderr and stdout). The ratio is (child + Node) / bare ffmpeg, the median of the per-run ratios.

| file | probe: child CPU ms | probe: Node CPU ms | probe: wall ms | bare ffmpeg: CPU ms | bare ffmpeg: wall ms | bare + peak graph: CPU ms | \`ffmpeg -version\`: CPU ms | CPU ratio (probe / bare) |
|---|---|---|---|---|---|---|---|---|
${decodeTable}

\`POST /echoes\` of a 60 s opus webm at a constant 128 kbit/s, ${(echoSize / 1e6).toFixed(2)} MB, through the real server
(\`bench/server.ts\`, local store + SQLite, its own process, default decoder settings: ${cpus().length} slots, half of them per user) with
\`AUDIO_DECODE=on\` and \`=off\` (music-metadata reads the headers). Each concurrent client is its own user. Each POST follows its own
upload-url and PUT, which are not timed; ${REQUESTS} requests per row, run in ${BLOCKS} blocks alternating between the two servers.
Server CPU is the server process and its decoder children (\`/proc/<pid>/stat\`) per upload cycle, upload-url and PUT included,
median over the blocks. The load generator shares the ${cpus().length} cores with the server.

| concurrency | decoding | requests | p50 ms | p99 ms | server CPU ms/cycle | errors | ratio to off (p50 / p99) |
|---|---|---|---|---|---|---|---|
${latencyTable}

${bullets.join('\n')}

${limits.markdown}`,
  );
}
