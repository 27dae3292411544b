// A 5×7 pixel font for printable ASCII (32..126), drawn for this project, for the PNG chart.
// Each glyph is 7 rows top to bottom, two hex digits a row; bit 4 (0x10) is the leftmost column.
// Lowercase letters sit on rows 2..6; g, p, q and y are drawn 2 rows lower (their descenders
// hang below the baseline), so their 7 rows are rows 2..8 of the cell.

const GLYPHS = [
  '00000000000000', '04040404040004', '0a0a0000000000', '0a0a1f0a1f0a0a', '040f140e051e04', '18190204081303', '0c12140815120d', '04040000000000',
  '02040808080402', '08040202020408', '0004150e150400', '0004041f040400', '000000000c0408', '0000001f000000', '00000000000c0c', '00010204081000',
  '0e11131519110e', '040c040404040e', '0e11010204081f', '1f02040201110e', '02060a121f0202', '1f101e0101110e', '0608101e11110e', '1f010204080808',
  '0e11110e11110e', '0e11110f01020c', '000c0c000c0c00', '000c0c000c0408', '02040810080402', '00001f001f0000', '08040201020408', '0e110102040004',
  '0e11010d15150e', '0e1111111f1111', '1e11111e11111e', '0e11101010110e', '1c12111111121c', '1f10101e10101f', '1f10101e101010', '0e11101711110f',
  '1111111f111111', '0e04040404040e', '0702020202120c', '11121418141211', '1010101010101f', '111b1515111111', '11111915131111', '0e11111111110e',
  '1e11111e101010', '0e11111115120d', '1e11111e141211', '0f10100e01011e', '1f040404040404', '1111111111110e', '11111111110a04', '1111111515150a',
  '11110a040a1111', '1111110a040404', '1f01020408101f', '0e08080808080e', '00100804020100', '0e02020202020e', '040a1100000000', '0000000000001f',
  '08040000000000', '00000e010f110f', '1010161911111e', '00000e1010110e', '01010d1311110f', '00000e111f100e', '0609081c080808', '0f1111110f010e',
  '10101619111111', '04000c0404040e', '0200060202120c', '10101214181412', '0c04040404040e', '00001a15151111', '00001619111111', '00000e1111110e',
  '1e1111111e1010', '0f1111110f0101', '00001619101010', '00000e100e011e', '08081c08080906', '0000111111130d', '00001111110a04', '0000111115150a',
  '0000110a040a11', '111111110f010e', '00001f0204081f', '02040408040402', '04040404040404', '08040402040408', '00000815020000',
]

/** Characters outside ASCII that chart labels may hold, drawn as their nearest ASCII. */
const FALLBACK: Record<string, string> = { '×': 'x', 'µ': 'u', '—': '-', '–': '-', '≥': '>', '≤': '<', '·': '.', '…': '...', '’': "'" }

export const GLYPH_WIDTH = 5
export const GLYPH_HEIGHT = 7

const DESCENDERS = 'gpqy'

/** Rows a glyph is drawn below the others. */
export const glyphDrop = (ch: string): number => (DESCENDERS.includes(ch) ? 2 : 0)

/** The 7 row bitmaps of a character (unknown characters as '?'). */
export function glyphRows(ch: string): number[] {
  let code = ch.charCodeAt(0)
  if (code < 32 || code > 126) code = 63
  const hex = GLYPHS[code - 32]!
  const rows: number[] = []
  for (let i = 0; i < GLYPH_HEIGHT; i++) rows.push(parseInt(hex.slice(i * 2, i * 2 + 2), 16))
  return rows
}

export function toAscii(text: string): string {
  let out = ''
  for (const ch of text) out += FALLBACK[ch] ?? ch
  return out
}
