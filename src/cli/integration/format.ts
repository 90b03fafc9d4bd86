import type { CheckResult, IntegrationReport } from './run.ts';

const MARK: Record<CheckResult['status'], string> = { pass: 'PASS', fail: 'FAIL', skip: 'SKIP' };

function pad(text: string, width: number): string {
  return text.length >= width ? text : text + ' '.repeat(width - text.length);
}

function clip(text: string, width: number): string {
  return width > 3 && text.length > width ? `${text.slice(0, width - 1)}…` : text;
}

/** The verdict line first (what scripts and people read), then one row per check. */
export function formatReport(report: IntegrationReport, columns = 120): string {
  const titleWidth = Math.max(5, ...report.checks.map((c) => c.title.length));
  const header = `${pad('', 4)}  ${pad('check', titleWidth)}  ${pad('ms', 7)}  detail`;
  const detailWidth = Math.max(30, columns - header.length + 'detail'.length);
  const rows = report.checks.map((c) => {
    const ms = c.status === 'skip' ? '-' : c.duration_ms.toFixed(1);
    return `${MARK[c.status]}  ${pad(c.title, titleWidth)}  ${pad(ms.padStart(7), 7)}  ${clip(c.detail, detailWidth)}`;
  });
  const totals = `${report.passed} passed, ${report.failed} failed, ${report.skipped} skipped in ${(report.duration_ms / 1000).toFixed(1)} s`;
  const clipped = report.checks.filter((c) => c.status === 'fail' && c.detail.length > detailWidth);
  const notes =
    clipped.length === 0
      ? []
      : ['', 'In full:', ...clipped.map((c) => `- ${c.title}: ${c.detail}`)];
  return [report.verdict, '', header, ...rows, ...notes, '', totals].join('\n');
}

/** integration-report-20260102-030405.json (UTC), sortable and safe in any file system. */
export function defaultReportName(date: Date): string {
  const stamp = date
    .toISOString()
    .replace(/\.\d+Z$/, '')
    .replace(/[-:]/g, '')
    .replace('T', '-');
  return `integration-report-${stamp}.json`;
}
