// Independent CID oracle for the content tests: js-ipfs-unixfs's importer (the code helia uses),
// with kubo's legacy parameters (profile unixfs-v0-2015: 256 KiB chunks, 174 links, links-bytes
// sharding at 256 KiB) and, for CIDv1, raw leaves as `ipfs add --cid-version=1` uses them.
// Usage: node tests/content/unixfs_oracle.mjs PATH [0|1]   -> prints the root CID.
import { createReadStream, readdirSync, statSync } from 'node:fs'
import { basename, join } from 'node:path'
import { importer } from 'ipfs-unixfs-importer'
import { BlackHoleBlockstore } from 'blockstore-core/black-hole'

const [target, versionArg = '1'] = process.argv.slice(2)
const version = Number(versionArg)

function * walk (dir, prefix) {
  for (const name of readdirSync(dir).sort()) {
    if (name.startsWith('.')) continue
    const full = join(dir, name)
    const rel = `${prefix}/${name}`
    if (statSync(full).isDirectory()) {
      yield { path: rel }
      yield * walk(full, rel)
    } else {
      yield { path: rel, content: createReadStream(full, { highWaterMark: 262144 }) }
    }
  }
}

const root = basename(target)
const source = statSync(target).isDirectory()
  ? [{ path: root }, ...walk(target, root)]
  : [{ path: root, content: createReadStream(target, { highWaterMark: 262144 }) }]

let rootCid = null
for await (const entry of importer(source, new BlackHoleBlockstore(), {
  profile: 'unixfs-v0-2015',
  cidVersion: version,
  rawLeaves: version === 1,
  shardSplitThresholdBytes: 262144,
  shardSplitStrategy: 'links-bytes'
})) {
  if (entry.path === root) rootCid = entry.cid
}
if (rootCid === null) {
  console.error(`no root entry for ${target}`)
  process.exit(1)
}
console.log(rootCid.toString())
