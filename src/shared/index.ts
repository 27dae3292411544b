// The public entry point for application authors: `import { definePackage, defineApp } from 'vvm'`.
export { definePackage, defineApp, perSecond, perMinute, perHour, wasm, DefinitionError } from './appdef/define.js'
export type * from './appdef/types.js'
export type * from './appdef/state.js'
export { grant, type GrantDef, type GrantOp } from './appdef/acl.js'
export { ExtensionError, VvmError } from './errors.js'
