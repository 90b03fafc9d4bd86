import { fileTypeFromBuffer } from 'file-type';

/** How many leading bytes the sniffer needs to recognise every supported format. */
export const SNIFF_BYTES = 4100;

/** The extension that the first bytes look like, or undefined when they look like nothing known. */
export async function sniffExtension(firstBytes: Uint8Array): Promise<string | undefined> {
  if (firstBytes.length === 0) return undefined;
  const type = await fileTypeFromBuffer(firstBytes);
  return type?.ext;
}
