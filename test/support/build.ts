import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/**
 * Vitest global setup: the CLI tests run the built package (dist/), so it is built from the
 * current sources first. tsc is incremental, so an unchanged tree costs a few seconds.
 */
export default function build(): void {
  execFileSync('npm', ['run', '--silent', 'build'], {
    cwd: fileURLToPath(new URL('../..', import.meta.url)),
    stdio: 'inherit',
  });
}
