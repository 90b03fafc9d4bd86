import { AppError } from './errors.ts';

export interface AudioFormat {
  readonly extension: string;
  /** Canonical content type first, accepted aliases after it. */
  readonly contentTypes: readonly string[];
  /** Extensions that the byte sniffer (file-type) reports for real files of this format. */
  readonly sniffedAs: readonly string[];
}

export const AUDIO_FORMATS: readonly AudioFormat[] = [
  { extension: 'webm', contentTypes: ['audio/webm'], sniffedAs: ['webm', 'mkv'] },
  {
    extension: 'wav',
    contentTypes: ['audio/wav', 'audio/x-wav', 'audio/wave'],
    sniffedAs: ['wav'],
  },
  { extension: 'mp3', contentTypes: ['audio/mpeg', 'audio/mp3'], sniffedAs: ['mp3'] },
  {
    extension: 'm4a',
    contentTypes: ['audio/mp4', 'audio/x-m4a'],
    sniffedAs: ['m4a', 'mp4', 'm4b'],
  },
  {
    extension: 'ogg',
    contentTypes: ['audio/ogg'],
    sniffedAs: ['ogg', 'oga', 'opus', 'spx', 'ogx'],
  },
  { extension: 'flac', contentTypes: ['audio/flac', 'audio/x-flac'], sniffedAs: ['flac'] },
  { extension: 'aac', contentTypes: ['audio/aac'], sniffedAs: ['aac'] },
];

const BY_EXTENSION = new Map(AUDIO_FORMATS.map((f) => [f.extension, f]));
const SUPPORTED_LIST = AUDIO_FORMATS.map((f) => f.extension).join(', ');

export function formatForExtension(raw: string): AudioFormat {
  const ext = raw.toLowerCase();
  if (!/^[a-z0-9]{1,10}$/.test(ext)) {
    throw new AppError(
      'UNSUPPORTED_FORMAT',
      `file_extension must be a bare extension such as "webm" (no dot or path). Supported: ${SUPPORTED_LIST}.`,
    );
  }
  const format = BY_EXTENSION.get(ext);
  if (!format)
    throw new AppError(
      'UNSUPPORTED_FORMAT',
      `"${ext}" is not a supported audio format. Supported: ${SUPPORTED_LIST}.`,
    );
  return format;
}

const TOKEN = '[A-Za-z0-9!#$&^_.+-]+';
// A quoted value holds visible ASCII, spaces and tabs: what a header can carry and every backend
// stores as given (no U+0000, no lone surrogate, no line break).
const PARAM_VALUE = '(?:[A-Za-z0-9!#$&^_.+,-]+|"[\\t\\x20\\x21\\x23-\\x5B\\x5D-\\x7E]*")';
const CONTENT_TYPE_RE = new RegExp(
  `^(${TOKEN}/${TOKEN})((?:\\s*;\\s*${TOKEN}=${PARAM_VALUE})*)\\s*$`,
);

export interface ParsedContentType {
  /** Lower-case type/subtype, without parameters: what is validated and stored. */
  readonly base: string;
  /** The whole value as the client will send it in the Content-Type header. */
  readonly header: string;
}

export function parseContentType(raw: string): ParsedContentType {
  const value = raw.trim();
  const match = value.length <= 200 ? CONTENT_TYPE_RE.exec(value) : null;
  if (!match?.[1]) {
    throw new AppError(
      'INVALID_REQUEST',
      'content_type must be a media type such as "audio/webm" or "audio/webm;codecs=opus".',
    );
  }
  return { base: match[1].toLowerCase(), header: value };
}

export function baseContentType(raw: string | undefined): string | undefined {
  return raw?.split(';')[0]?.trim().toLowerCase() || undefined;
}

/** Checks that the content type belongs to the extension's format. */
export function assertContentTypeMatches(
  format: AudioFormat,
  contentType: ParsedContentType,
): void {
  if (!format.contentTypes.includes(contentType.base)) {
    throw new AppError(
      'CONTENT_TYPE_MISMATCH',
      `content_type "${contentType.base}" does not match "${format.extension}"; use ${format.contentTypes.map((t) => `"${t}"`).join(' or ')}.`,
    );
  }
}

/** True when the sniffed extension of the first bytes is one this format produces. */
export function sniffMatches(format: AudioFormat, sniffedExtension: string | undefined): boolean {
  return sniffedExtension !== undefined && format.sniffedAs.includes(sniffedExtension);
}
