// bank.TransferWasm: bank.Transfer of demo/bank/index.ts in AssemblyScript, with the same
// arguments, result and errors. Built into dist/demo/bank/transfer.wasm by scripts/build-wasm.mjs
// and bound with `wasm('transfer.wasm', 'transfer')`.

import { Call, Obj, State, obj } from '../../../sdk/assemblyscript'
export { vvm_alloc } from '../../../sdk/assemblyscript'

/** Why a status: 0 when the account can be used, else the error status; `message` says why. */
let message = ''

function check(acc: Obj | null, id: i64): i32 {
  if (acc == null || acc.str('sys.QName') != 'bank.Account') {
    message = 'account ' + id.toString() + ' not found'
    return 404
  }
  if (!acc.bool('sys.IsActive')) {
    message = 'account ' + id.toString() + ' is closed'
    return 410
  }
  return 0
}

export function transfer(ptr: usize, len: u32): i64 {
  const call = Call.begin(ptr, len)
  const fromId = call.args.int('from')
  const toId = call.args.int('to')
  const amount = call.args.int('amount')
  if (fromId == toId) return call.fail(400, 'from and to are the same account')
  // Both accounts in one host call; checked in the builtin's order.
  const accounts = State.records([fromId, toId])
  const from = accounts[0]
  const to = accounts[1]
  let status = check(from, fromId)
  if (status != 0) return call.fail(status, message)
  status = check(to, toId)
  if (status != 0) return call.fail(status, message)
  const fromBalance = from!.int('balance')
  const toBalance = to!.int('balance')
  if (fromBalance < amount) return call.fail(409, 'insufficient funds', obj().setInt('balance', fromBalance))
  State.update(fromId, obj().setInt('balance', fromBalance - amount))
  State.update(toId, obj().setInt('balance', toBalance + amount))
  return call.ok(obj().setInt('from', fromBalance - amount).setInt('to', toBalance + amount))
}
