export class Batcher {
    run;
    maxBatch;
    maxInFlight;
    queue = [];
    inFlight = 0;
    scheduled = false;
    /** `run` answers the requests in order, one result per request; a rejection fails the whole batch. */
    constructor(run, maxBatch = 256, maxInFlight = 1) {
        this.run = run;
        this.maxBatch = maxBatch;
        this.maxInFlight = maxInFlight;
    }
    call(req) {
        return new Promise((resolve, reject) => {
            this.queue.push({ req, resolve, reject });
            this.kick();
        });
    }
    kick() {
        if (this.inFlight >= this.maxInFlight || this.scheduled || this.queue.length === 0)
            return;
        this.scheduled = true;
        process.nextTick(() => {
            this.scheduled = false;
            this.flush();
        });
    }
    flush() {
        if (this.inFlight >= this.maxInFlight || this.queue.length === 0)
            return;
        const batch = this.queue.splice(0, this.maxBatch);
        this.inFlight++;
        let sent;
        try {
            sent = this.run(batch.map((w) => w.req));
        }
        catch (error) {
            sent = Promise.reject(error);
        }
        const fail = (error) => {
            for (const w of batch)
                w.reject(error);
        };
        sent
            .then((results) => {
            if (results.length !== batch.length)
                return fail(new Error(`a batch of ${batch.length} got ${results.length} results`));
            batch.forEach((w, i) => w.resolve(results[i]));
        }, fail)
            .finally(() => {
            this.inFlight--;
            this.kick();
        });
    }
}
//# sourceMappingURL=batcher.js.map