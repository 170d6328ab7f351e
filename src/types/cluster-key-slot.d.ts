declare module 'cluster-key-slot' {
  /** The Redis Cluster slot (CRC16 of the key's hash tag, mod 16384) of a key. */
  function generate(key: string | Buffer): number;
  export default generate;
  export function generateMulti(keys: (string | Buffer)[]): number;
}
