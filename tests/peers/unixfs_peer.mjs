// The IPFS reference importer (ipfs-unixfs-importer, npm) with kubo's
// `ipfs add --cid-version=1` settings: raw leaves, 256 KiB fixed chunks,
// balanced layout of at most 174 links. Prints one CID per file argument.
import { importer } from "ipfs-unixfs-importer";
import { fixedSize } from "ipfs-unixfs-importer/chunker";
import { balanced } from "ipfs-unixfs-importer/layout";
import { MemoryBlockstore } from "blockstore-core/memory";
import { createReadStream } from "node:fs";

for (const path of process.argv.slice(2)) {
  // A blockstore that keeps nothing: only the CIDs matter here.
  const blockstore = new MemoryBlockstore();
  blockstore.put = async (cid) => cid;
  const opts = {
    cidVersion: 1,
    rawLeaves: true,
    reduceSingleLeafToSelf: true,
    chunker: fixedSize({ chunkSize: 262144 }),
    layout: balanced({ maxChildrenPerNode: 174 }),
    wrapWithDirectory: false,
  };
  let last;
  for await (const entry of importer([{ content: createReadStream(path) }], blockstore, opts)) {
    last = entry;
  }
  console.log(last.cid.toString());
}
