export * from './errors.ts';
export * from './formats.ts';
export * from './ids.ts';
export * from './keys.ts';
export * from './upload-policy.ts';
export * from './echo.ts';
export * from './listing.ts';
export * from './waveform.ts';
