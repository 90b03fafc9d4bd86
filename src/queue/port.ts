/** Which export to build: what the API hands the worker (an SQS message body on AWS). */
export interface ExportJobRef {
  readonly userId: string;
  readonly exportId: string;
}

/**
 * Where the API sends export jobs for a worker elsewhere to build (SQS on AWS, where a Lambda
 * function stops running once it has answered). Without one, the server builds them in-process.
 */
export interface ExportQueue {
  readonly name: string;
  /** Resolves once the queue holds the job; PortError `unavailable` when it does not answer. */
  send(job: ExportJobRef): Promise<void>;
  close(): Promise<void>;
}
