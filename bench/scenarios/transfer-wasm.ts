// `transfer-wasm`: `transfer`'s load on bank.TransferWasm, the same command as a WASM extension
// (AssemblyScript, demo/bank/assembly/transfer.ts). The standard report sets it beside
// `transfer` for the "WASM vs builtin" target.

import { transferScenario } from './transfer.js'

export default transferScenario('transfer-wasm', 'bank.TransferWasm', 'bank.TransferWasm (the WASM twin of bank.Transfer) of 1 between the two accounts of a random workspace')
