// The child's side of askBenchChild (child.ts): each message the parent sends is answered with what `handle` gives
// for it, or its error (with its stack); the child ends when the parent goes.
export function answerParent<Message>(handle: (message: Message) => Promise<unknown> | undefined): void {
  process.on('message', (message: Message) => {
    handle(message)?.then(
      (value) => process.send?.({ ok: true, value }),
      (error: unknown) =>
        process.send?.({ ok: false, error: error instanceof Error ? (error.stack ?? error.message) : String(error) }),
    );
  });
  process.on('disconnect', () => process.exit(0));
}
