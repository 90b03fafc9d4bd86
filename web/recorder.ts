import { RECORDING_TYPES } from './audio.ts';

export interface Recording {
  readonly blob: Blob;
  /** Exactly what MediaRecorder produced, e.g. audio/webm;codecs=opus. */
  readonly mimeType: string;
  readonly seconds: number;
}

export function recordingSupported(): boolean {
  return typeof MediaRecorder !== 'undefined' && Boolean(navigator.mediaDevices?.getUserMedia);
}

function pickType(): string | undefined {
  return RECORDING_TYPES.find((t) => MediaRecorder.isTypeSupported(t));
}

/** One microphone take: start() asks for the microphone, stop() resolves with the audio. */
export class MicRecorder {
  private recorder: MediaRecorder | undefined;
  private stream: MediaStream | undefined;
  private chunks: Blob[] = [];
  private startedAt = 0;

  get recording(): boolean {
    return this.recorder?.state === 'recording';
  }

  get elapsedSeconds(): number {
    return this.recording ? (performance.now() - this.startedAt) / 1000 : 0;
  }

  async start(): Promise<void> {
    this.stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    const type = pickType();
    this.recorder = new MediaRecorder(this.stream, type ? { mimeType: type } : {});
    this.chunks = [];
    this.recorder.ondataavailable = (event) => {
      if (event.data.size > 0) this.chunks.push(event.data);
    };
    this.recorder.start();
    this.startedAt = performance.now();
  }

  stop(): Promise<Recording> {
    const recorder = this.recorder;
    if (!recorder || recorder.state === 'inactive')
      return Promise.reject(new Error('Not recording.'));
    const seconds = (performance.now() - this.startedAt) / 1000;
    return new Promise((resolve) => {
      recorder.onstop = () => {
        for (const track of this.stream?.getTracks() ?? []) track.stop();
        // recorder.mimeType names the codec the browser really used.
        const mimeType = recorder.mimeType || this.chunks[0]?.type || 'audio/webm';
        resolve({ blob: new Blob(this.chunks, { type: mimeType }), mimeType, seconds });
      };
      recorder.stop();
    });
  }
}
