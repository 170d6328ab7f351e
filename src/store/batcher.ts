/**
 * Coalesces calls into batches: calls made while a batch is in flight wait
 * and go out together as the next one, so under load many requests share one
 * Redis command (and one Lua call), while a lone call leaves at once (at the
 * end of the current tick, so calls made in the same tick share it too).
 */
interface Waiting<Req, Res> {
  readonly req: Req;
  readonly resolve: (res: Res) => void;
  readonly reject: (error: unknown) => void;
}

export class Batcher<Req, Res> {
  private queue: Waiting<Req, Res>[] = [];
  private inFlight = 0;
  private scheduled = false;

  /** `run` answers the requests in order, one result per request; a rejection fails the whole batch. */
  constructor(
    private readonly run: (reqs: Req[]) => Promise<Res[]>,
    private readonly maxBatch = 256,
    private readonly maxInFlight = 1,
  ) {}

  call(req: Req): Promise<Res> {
    return new Promise<Res>((resolve, reject) => {
      this.queue.push({ req, resolve, reject });
      this.kick();
    });
  }

  private kick(): void {
    if (this.inFlight >= this.maxInFlight || this.scheduled || this.queue.length === 0) return;
    this.scheduled = true;
    process.nextTick(() => {
      this.scheduled = false;
      this.flush();
    });
  }

  private flush(): void {
    if (this.inFlight >= this.maxInFlight || this.queue.length === 0) return;
    const batch = this.queue.splice(0, this.maxBatch);
    this.inFlight++;
    let sent: Promise<Res[]>;
    try {
      sent = this.run(batch.map((w) => w.req));
    } catch (error) {
      sent = Promise.reject(error);
    }
    const fail = (error: unknown) => {
      for (const w of batch) w.reject(error);
    };
    sent
      .then((results) => {
        if (results.length !== batch.length) return fail(new Error(`a batch of ${batch.length} got ${results.length} results`));
        batch.forEach((w, i) => w.resolve(results[i]!));
      }, fail)
      .finally(() => {
        this.inFlight--;
        this.kick();
      });
  }
}
