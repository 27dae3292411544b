// The vvm AssemblyScript SDK: write commands, queries and projectors as WebAssembly.
// Guide, ABI and payloads: docs/extensions.md. Depends on nothing but the AssemblyScript std.
//
// An extension module re-exports `vvm_alloc` and exports entry points:
//
//   import { Call, State, obj } from '<path>/sdk/assemblyscript'
//   export { vvm_alloc } from '<path>/sdk/assemblyscript'
//
//   export function hello(ptr: usize, len: u32): i64 {
//     const call = Call.begin(ptr, len)
//     return call.ok(obj().setStr('hello', call.args.str('name')))
//   }
//
// Build: asc hello.ts --runtime incremental --use abort=<path>/sdk/assemblyscript/abi/vvmAbort -O3

export { vvm_alloc, vvmAbort, rawHostCall, Op } from './abi'
export { Call, obj } from './call'
export { State, ViewRange, Principal } from './state'
export { Kind, Obj, Value } from './value'
export { Reader, Writer } from './msgpack'
