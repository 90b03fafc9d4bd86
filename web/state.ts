import { EchoesClient, type MultipartTicket } from '../src/client/echoes-client.ts';
import { savedApiBase } from './api-base.ts';
import type { UploadFormat } from './audio.ts';
import { MicRecorder } from './recorder.ts';
import { xhrUploader } from './xhr-uploader.ts';

export interface Take {
  readonly blob: Blob;
  readonly format: UploadFormat;
  readonly seconds: number | null;
  readonly label: string;
}

/** What the parts of the page share; one object, because changing the API replaces the client. */
export const state: {
  client: EchoesClient;
  take: Take | undefined;
  busy: boolean;
  /** A multipart upload of the current take that stopped part-way: Upload again resumes it. */
  unfinished: { take: Take; ticket: MultipartTicket } | undefined;
} = {
  client: new EchoesClient({ baseUrl: savedApiBase(), uploader: xhrUploader }),
  take: undefined,
  busy: false,
  unfinished: undefined,
};

export const recorder = new MicRecorder();
