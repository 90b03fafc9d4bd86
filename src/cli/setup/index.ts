export { runSetup, type SetupOptions, type SetupResult } from './run.ts';
export { mergeEnvFile, envLines, type EnvFileChange } from './env-file.ts';
export { formatItem, formatSummary, formatEnvFileChange } from './report.ts';
export { SetupError, type SetupItem, type Action } from './items.ts';
export { ENVIRONMENTS, type EnvironmentName } from './templates.ts';
