import { execFileSync, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

/** Measuring helpers of the audio-decode bench and its decode-limits part. */

export const CLK_TCK =
  Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

/**
 * CPU seconds from /proc/<pid>/stat: user + system of the process itself (fields 14-15) and of
 * the children it has waited for (16-17). Node's cpuUsage() only sees the first two.
 */
export function procCpu(pid: number | 'self'): { own: number; children: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name, which may hold spaces; field 3 is at index 0.
  const f = stat
    .slice(stat.lastIndexOf(')') + 2)
    .split(' ')
    .map(Number);
  const at = (field: number): number => f[field - 3] ?? 0;
  return { own: (at(14) + at(15)) / CLK_TCK, children: (at(16) + at(17)) / CLK_TCK };
}

/**
 * Live decoders of the server `pid`: its ffmpeg children (prlimit execs ffmpeg in place). Other
 * children, such as tsx's esbuild service, are not counted.
 */
export function decoderCount(pid: number): number {
  const read = (path: string): string => {
    try {
      return readFileSync(path, 'utf8').trim();
    } catch {
      return ''; // the thread or the child ended between the listing and the read
    }
  };
  const children = readdirSync(`/proc/${pid}/task`).flatMap((task) =>
    read(`/proc/${pid}/task/${task}/children`).split(/\s+/).filter(Boolean),
  );
  return children.filter((child) => ['ffmpeg', 'prlimit'].includes(read(`/proc/${child}/comm`)))
    .length;
}

export function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] ?? 0) : ((s[mid - 1] ?? 0) + (s[mid] ?? 0)) / 2;
}

/** Nearest rank: p99 of 100 samples is the 99th fastest. */
export function percentile(values: readonly number[], p: number): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.max(0, Math.ceil((p / 100) * s.length) - 1)] ?? NaN;
}

export function ffmpeg(args: string[]): void {
  execFileSync('ffmpeg', ['-v', 'error', '-nostdin', '-y', ...args], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
}

export function spawnAndWait(binary: string, args: string[]): Promise<void> {
  return new Promise((ok, fail) => {
    const child = spawn(binary, args, { stdio: 'ignore' });
    child.once('error', fail);
    child.once('close', (code) =>
      code === 0 ? ok() : fail(new Error(`${binary} ${args.join(' ')} exited with ${code}`)),
    );
  });
}

export interface Sample {
  wall: number;
  /** Child processes waited for (ffmpeg; prlimit execs it in place), seconds. */
  children: number;
  /** This Node process: spooling the file, reading the child's output, parsing it. */
  node: number;
}

export async function timed(work: () => Promise<void>): Promise<Sample> {
  const cpu0 = procCpu('self').children;
  const node0 = process.cpuUsage();
  const t0 = performance.now();
  await work();
  const wall = (performance.now() - t0) / 1000;
  const node = process.cpuUsage(node0);
  return { wall, children: procCpu('self').children - cpu0, node: (node.user + node.system) / 1e6 };
}

export interface Ticket {
  upload_url: string;
  headers: Record<string, string>;
  echo_id: string;
}

/** upload-url and PUT: the echo is ready for POST /echoes. */
export async function upload(
  url: string,
  auth: Record<string, string>,
  bytes: Buffer,
  extension: string,
  contentType: string,
): Promise<Ticket> {
  const res = await fetch(`${url}/echoes/upload-url`, {
    method: 'POST',
    headers: { ...auth, 'content-type': 'application/json' },
    body: JSON.stringify({
      file_extension: extension,
      content_type: contentType,
      file_size: bytes.length,
    }),
  });
  if (res.status !== 200) throw new Error(`upload-url answered ${res.status}: ${await res.text()}`);
  const ticket = (await res.json()) as Ticket;
  const put = await fetch(ticket.upload_url, {
    method: 'PUT',
    headers: ticket.headers,
    body: bytes,
  });
  await put.arrayBuffer();
  if (!put.ok) throw new Error(`PUT answered ${put.status}`);
  return ticket;
}
