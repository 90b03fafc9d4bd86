import { execFileSync, spawn } from 'node:child_process';
import { createReadStream, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { FfmpegAudioProbe } from '../src/audio/ffmpeg-audio-probe.ts';
import { signDevToken } from '../src/auth/tokens.ts';
import { startBenchServer, stopBenchServer, type BenchServer } from './harness.ts';
import { writeSection } from './report.ts';

/**
 * What decoding every upload costs. (1) Throughput of FfmpegAudioProbe on a 60 s opus webm and a
 * 60 s wav, against a bare `ffmpeg` decode of the same file to /dev/null; (2) POST /echoes
 * latency for a ~1 MB opus webm through the real server with AUDIO_DECODE=on and =off, the two
 * servers measured in alternating blocks so that the machine's noise falls on both alike.
 */
const RUNS = 5;
/** Probes per run: a 60 s wav decodes in a few clock ticks, too coarse to time one by one. */
const PROBES_PER_RUN = 3;
const REQUESTS = Number(process.env.BENCH_AUDIO_REQUESTS ?? 100);
const CONCURRENCIES = [1, 4] as const;
/** Blocks per mode and concurrency; on and off alternate block by block. */
const BLOCKS = 4;
const MAX_BYTES = 100 * 1024 * 1024;
const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

interface Sample {
  wall: number;
  /** ffprobe + ffmpeg (prlimit execs them in place), seconds. */
  children: number;
  /** This Node process: spooling the file, reading the PCM pipe, tracking peaks. */
  node: number;
}

/**
 * CPU seconds from /proc/<pid>/stat: user + system of the process itself (fields 14-15) and of
 * the children it has waited for (16-17). Node's cpuUsage() only sees the first two.
 */
function procCpu(pid: number | 'self'): { own: number; children: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name, which may hold spaces; field 3 is at index 0.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ').map(Number);
  const at = (field: number): number => f[field - 3] ?? 0;
  return { own: (at(14) + at(15)) / CLK_TCK, children: (at(16) + at(17)) / CLK_TCK };
}

async function timed(work: () => Promise<void>): Promise<Sample> {
  const cpu0 = procCpu('self').children;
  const node0 = process.cpuUsage();
  const t0 = performance.now();
  await work();
  const wall = (performance.now() - t0) / 1000;
  const node = process.cpuUsage(node0);
  return { wall, children: procCpu('self').children - cpu0, node: (node.user + node.system) / 1e6 };
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] ?? 0) : ((s[mid - 1] ?? 0) + (s[mid] ?? 0)) / 2;
}

/** Nearest rank: p99 of 100 samples is the 99th fastest. */
function percentile(values: number[], p: number): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.max(0, Math.ceil((p / 100) * s.length) - 1)] ?? NaN;
}

function ffmpeg(args: string[]): void {
  execFileSync('ffmpeg', ['-v', 'error', '-nostdin', '-y', ...args], { stdio: ['ignore', 'ignore', 'inherit'] });
}

function spawnAndWait(binary: string, args: string[]): Promise<void> {
  return new Promise((ok, fail) => {
    const child = spawn(binary, args, { stdio: 'ignore' });
    child.once('error', fail);
    child.once('close', (code) => (code === 0 ? ok() : fail(new Error(`${binary} ${args.join(' ')} exited with ${code}`))));
  });
}

function bareDecode(file: string): Promise<void> {
  return spawnAndWait('ffmpeg', ['-v', 'error', '-nostdin', '-i', file, '-f', 's16le', '-y', '/dev/null']);
}

/** Starting ffprobe and ffmpeg and doing nothing: the floor under every probe. */
async function startBoth(): Promise<void> {
  await spawnAndWait('ffprobe', ['-version']);
  await spawnAndWait('ffmpeg', ['-version']);
}

interface Throughput {
  name: string;
  audioSeconds: number;
  probe: Sample;
  bare: Sample;
  /** startBoth(), measured in the same runs. */
  floor: Sample;
}

async function throughput(name: string, file: string, extension: string, audioSeconds: number): Promise<Throughput> {
  // One at a time: the figure is the cost of one decode, not how two cores share several.
  const probe = new FfmpegAudioProbe({ concurrency: 1 });
  const once = async (): Promise<void> => {
    const facts = await probe.probe(async () => createReadStream(file), { extension, maxDurationSeconds: 1800, maxBytes: MAX_BYTES });
    if (Math.abs((facts.durationSeconds ?? 0) - audioSeconds) > 0.1) throw new Error(`${name}: measured ${facts.durationSeconds} s, expected ${audioSeconds} s`);
  };
  const batch = (work: () => Promise<void>) => async (): Promise<void> => {
    for (let i = 0; i < PROBES_PER_RUN; i++) await work();
  };
  await once(); // warm-up: page cache, shared libraries, JIT
  await bareDecode(file);
  await startBoth();
  const probes: Sample[] = [];
  const bares: Sample[] = [];
  const floors: Sample[] = [];
  // Interleaved, so a busy moment on the machine lands on both.
  for (let r = 0; r < RUNS; r++) {
    probes.push(await timed(batch(once)));
    bares.push(await timed(batch(() => bareDecode(file))));
    floors.push(await timed(batch(startBoth)));
  }
  const med = (samples: Sample[]): Sample => ({
    wall: median(samples.map((s) => s.wall)) / PROBES_PER_RUN,
    children: median(samples.map((s) => s.children)) / PROBES_PER_RUN,
    node: median(samples.map((s) => s.node)) / PROBES_PER_RUN,
  });
  const result = { name, audioSeconds, probe: med(probes), bare: med(bares), floor: med(floors) };
  const p = result.probe;
  console.log(`${name}: start-up floor ${(result.floor.children * 1000).toFixed(0)} ms CPU, ${(audioSeconds / p.children).toFixed(0)} audio s per child CPU s, ${(audioSeconds / (p.children + p.node)).toFixed(0)} with Node's, ${(audioSeconds / p.wall).toFixed(0)} per wall s; bare ffmpeg ${(audioSeconds / result.bare.children).toFixed(0)} per CPU s`);
  return result;
}

interface Ticket { upload_url: string; headers: Record<string, string>; echo_id: string }
interface EchoBody { duration_seconds?: number | null; waveform?: number[] | null }

interface Mode {
  name: 'on' | 'off';
  server: BenchServer;
  dataDir: string;
  auth: Record<string, string>;
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
async function cycle(mode: Mode, bytes: Buffer): Promise<{ ms: number; ok: boolean; body: EchoBody }> {
  const json = { ...mode.auth, 'content-type': 'application/json' };
  const res = await fetch(`${mode.server.url}/echoes/upload-url`, {
    method: 'POST', headers: json,
    body: JSON.stringify({ file_extension: 'webm', content_type: 'audio/webm;codecs=opus', file_size: bytes.length }),
  });
  if (res.status !== 200) throw new Error(`upload-url answered ${res.status}: ${await res.text()}`);
  const ticket = (await res.json()) as Ticket;
  const put = await fetch(ticket.upload_url, { method: 'PUT', headers: ticket.headers, body: bytes });
  await put.arrayBuffer();
  if (!put.ok) throw new Error(`PUT answered ${put.status}`);
  const t0 = performance.now();
  const post = await fetch(`${mode.server.url}/echoes`, { method: 'POST', headers: json, body: JSON.stringify({ echo_id: ticket.echo_id }) });
  const body = (await post.json()) as EchoBody;
  return { ms: performance.now() - t0, ok: post.status === 201, body };
}

async function block(mode: Mode, bytes: Buffer, count: number, concurrency: number, into: Latency): Promise<void> {
  const pid = mode.server.child.pid ?? 0;
  const cpu = (): number => {
    const c = procCpu(pid);
    return c.own + c.children;
  };
  const before = cpu();
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < count) {
      next++;
      const r = await cycle(mode, bytes);
      into.ms.push(r.ms);
      if (!r.ok) into.errors++;
    }
  }));
  into.cpuMs.push(((cpu() - before) * 1000) / count);
}

async function startMode(name: 'on' | 'off', bytes: Buffer): Promise<Mode> {
  const dataDir = mkdtempSync(join(tmpdir(), `echoes-bench-decode-${name}-`));
  const server = await startBenchServer(dataDir, { AUDIO_DECODE: name });
  const mode = { name, server, dataDir, auth: { authorization: `Bearer ${await signDevToken(dataDir, 'bench-user')}` } };
  const health = (await (await fetch(`${server.url}/health`)).json()) as { decoder?: string };
  console.log(`AUDIO_DECODE=${name}: /health decoder "${health.decoder}"`);
  // The echo must be what the mode claims: measured and drawn when on, headers only when off.
  const { ok, body } = await cycle(mode, bytes);
  const decoded = typeof body.duration_seconds === 'number' && Array.isArray(body.waveform);
  if (!ok || decoded !== (name === 'on')) throw new Error(`AUDIO_DECODE=${name}: unexpected echo ${JSON.stringify(body).slice(0, 300)}`);
  for (let i = 0; i < 4; i++) await cycle(mode, bytes); // warm-up
  return mode;
}

export async function run(): Promise<void> {
  const ffmpegVersion = execFileSync('ffmpeg', ['-version'], { encoding: 'utf8' }).split('\n')[0]?.replace(/ Copyright.*$/, '') ?? 'unknown';
  const dir = mkdtempSync(join(tmpdir(), 'echoes-bench-decode-'));
  const files = { opus: join(dir, 'tone.webm'), wav: join(dir, 'tone.wav'), echo: join(dir, 'echo.webm') };
  const sine = ['-f', 'lavfi', '-i', 'sine=frequency=440:duration=60:sample_rate=48000'];
  let decode: Throughput[];
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
      await throughput('60 s opus webm (128 kbit/s constant, the POST /echoes file below)', files.echo, 'webm', 60),
    ];

    const echo = readFileSync(files.echo);
    echoSize = echo.length;
    const modes = [await startMode('on', echo), await startMode('off', echo)];
    try {
      for (const concurrency of CONCURRENCIES) {
        const rows = modes.map((m): Latency => ({ mode: m.name, concurrency, ms: [], errors: 0, cpuMs: [] }));
        for (let b = 0; b < BLOCKS; b++) {
          for (const [i, m] of modes.entries()) {
            const row = rows[i];
            if (row) await block(m, echo, Math.ceil(REQUESTS / BLOCKS), concurrency, row);
          }
        }
        for (const r of rows) {
          console.log(`POST /echoes, decoding ${r.mode}, concurrency ${concurrency}: p50 ${percentile(r.ms, 50).toFixed(1)} ms, p99 ${percentile(r.ms, 99).toFixed(1)} ms, ${r.ms.length} requests, ${r.errors} errors`);
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

  const decodeTable = decode.map((d) => {
    const p = d.probe;
    const rate = (s: number): string => (d.audioSeconds / s).toFixed(0);
    return `| ${d.name} | ${rate(p.children)} | ${rate(p.children + p.node)} | ${rate(p.wall)} | ${rate(d.bare.children)} | ${rate(d.bare.wall)} | ${(d.bare.children / p.children).toFixed(2)} |`;
  }).join('\n');

  const fmt = (n: number): string => n.toFixed(1);
  const latencyTable = CONCURRENCIES.map((c) => {
    const on = latencies.find((l) => l.mode === 'on' && l.concurrency === c);
    const off = latencies.find((l) => l.mode === 'off' && l.concurrency === c);
    if (!on || !off) return '';
    const row = (l: Latency, ratios: string): string =>
      `| ${c} | ${l.mode} | ${l.ms.length} | ${fmt(percentile(l.ms, 50))} | ${fmt(percentile(l.ms, 99))} | ${fmt(median(l.cpuMs))} | ${l.errors} | ${ratios} |`;
    const ratio = (p: number): string => (percentile(on.ms, p) / percentile(off.ms, p)).toFixed(1);
    return [row(off, '1.0 / 1.0'), row(on, `${ratio(50)} / ${ratio(99)}`)].join('\n');
  }).filter(Boolean).join('\n');

  const [onC1, offC1] = [latencies.find((l) => l.mode === 'on' && l.concurrency === 1), latencies.find((l) => l.mode === 'off' && l.concurrency === 1)];
  const decodeCost = onC1 && offC1 ? median(onC1.cpuMs) - median(offC1.cpuMs) : NaN;
  const [opus, wav, big] = decode;
  const ms = (seconds: number): string => (seconds * 1000).toFixed(0);
  const bullets: string[] = [];
  if (opus && wav && big) {
    bullets.push(`- A 60 s opus echo at 32 kbit/s costs ${ms(opus.probe.children)} ms of decoder CPU (${ms(big.probe.children)} ms at 128 kbit/s) plus ${ms(opus.probe.node)} ms in Node: one core proves about ${(60 / (opus.probe.children + opus.probe.node)).toFixed(0)} minutes of such audio per minute.`);
    bullets.push(`- Most of that is starting the two processes: \`ffprobe -version\` plus \`ffmpeg -version\`, measured in the same runs, cost ${ms(opus.floor.children)} ms of CPU beside the opus probe's ${ms(opus.probe.children)} and ${ms(wav.floor.children)} ms beside the wav probe's ${ms(wav.probe.children)}; the 60 s of decoding itself is the smaller part.`);
  }
  if (onC1 && offC1) {
    bullets.push(`- With decoding on, POST /echoes of the 1 MB echo takes ${(percentile(onC1.ms, 50) / percentile(offC1.ms, 50)).toFixed(0)}x as long at the median (${fmt(percentile(onC1.ms, 50))} ms against ${fmt(percentile(offC1.ms, 50))} ms) and the server spends ${fmt(decodeCost)} ms more CPU per echo.`);
  }
  const onC4 = latencies.find((l) => l.mode === 'on' && l.concurrency === 4);
  if (onC1 && onC4) {
    bullets.push(`- At concurrency 4, four cycles share ${cpus().length} cores and ${cpus().length} decoder slots (\`AUDIO_DECODE_CONCURRENCY\` defaults to the core count) with the load generator: the median POST with decoding on is ${fmt(percentile(onC4.ms, 50))} ms, ${(percentile(onC4.ms, 50) / percentile(onC1.ms, 50)).toFixed(1)}x its concurrency-1 figure.`);
  }
  writeSection('audio-decode', `## Audio decoding: throughput and POST /echoes with decoding on and off

${ffmpegVersion}, ${cpus().length} cores. Every file is a 440 Hz tone made by ffmpeg at bench time.
Decode throughput is \`FfmpegAudioProbe.probe\` (spool to a temp file, ffprobe, full decode to PCM under prlimit, peaks)
one probe at a time, median of ${RUNS} runs of ${PROBES_PER_RUN} probes; the baseline is a bare \`ffmpeg -i file -f s16le /dev/null\`
measured in the same runs, interleaved. CPU is user + system from \`/proc/self/stat\` (children: ffprobe and ffmpeg;
Node: the bench process, which spools and tracks the peaks), in ${CLK_TCK} Hz clock ticks for the children.

| file | audio s per CPU s (decoders) | audio s per CPU s (decoders + Node) | audio s per wall s | bare ffmpeg: audio s per CPU s | bare ffmpeg: audio s per wall s | CPU ratio (bare / probe) |
|---|---|---|---|---|---|---|
${decodeTable}

\`POST /echoes\` of a 60 s opus webm at a constant 128 kbit/s, ${(echoSize / 1e6).toFixed(2)} MB, through the real server
(\`bench/server.ts\`, local store + SQLite, its own process) with \`AUDIO_DECODE=on\` and \`=off\` (music-metadata reads the headers).
Each POST follows its own upload-url and PUT, which are not timed; ${REQUESTS} requests per row, run in ${BLOCKS} blocks alternating
between the two servers. Server CPU is the server process and its decoder children (\`/proc/<pid>/stat\`) per upload cycle,
upload-url and PUT included, median over the blocks. The load generator shares the ${cpus().length} cores with the server.

| concurrency | decoding | requests | p50 ms | p99 ms | server CPU ms/cycle | errors | ratio to off (p50 / p99) |
|---|---|---|---|---|---|---|---|
${latencyTable}

${bullets.join('\n')}`);
}
