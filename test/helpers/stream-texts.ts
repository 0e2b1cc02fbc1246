// Texts an answer may be made of, ordinary and pathological: what the output bounds are measured and tested on.

const repeated = (sample: string, chars: number) => sample.repeat(Math.ceil(chars / sample.length)).slice(0, chars);
const hexWords = Array.from({ length: 600 }, (_, i) => ((i * 2654435761) >>> 0).toString(16).padStart(8, '0'));

/** Each text about 2,400 characters: prose, code, every script, and the runs and dumps that tokenizers treat unevenly. */
export const STREAM_TEXTS: Record<string, string> = {
  prose: repeated(
    'The committee met on Tuesday to review the quarterly results. Revenue grew by twelve percent, driven mostly by ' +
      'the new subscription tier, while operating costs stayed flat. ',
    2400,
  ),
  code: repeated(
    'export async function fetchUser(id: string): Promise<User | undefined> {\n' +
      "  const res = await fetch(`/api/users/${encodeURIComponent(id)}`, { headers: { accept: 'application/json' } });\n" +
      '  if (!res.ok) return undefined;\n  return ((await res.json()) as { user?: User }).user;\n}\n',
    2400,
  ),
  Thai: repeated('ภาษาไทยเป็นภาษาที่มีเอกลักษณ์เฉพาะตัว การเขียนไม่มีการเว้นวรรคระหว่างคำ ', 2400),
  Hindi: repeated('भारत एक विशाल देश है जिसमें अनेक भाषाएँ और संस्कृतियाँ हैं। दिल्ली इसकी राजधानी है। ', 2400),
  Arabic: repeated('الذكاء الاصطناعي يغير طريقة حياتنا بشكل كبير، ويستخدم في مجالات عديدة مثل الطب والتعليم. ', 2400),
  Chinese: repeated('人工智能正在改变我们的生活方式。从智能手机到自动驾驶汽车，机器学习算法无处不在。', 2400),
  Japanese: repeated('東京の天気は今日も晴れです。週末には多くの人々が公園に集まり、桜の花を楽しみました。', 2400),
  Korean: repeated(
    '한국어는 한글이라는 고유한 문자를 사용합니다. 세종대왕이 창제한 한글은 과학적인 문자로 평가받고 있습니다. ',
    2400,
  ),
  digits: Array.from({ length: 600 }, (_, i) => String((i * 7919) % 100003))
    .join('')
    .slice(0, 2400),
  zeros: '0'.repeat(2400),
  spaces: ' '.repeat(2400),
  newlines: '\n'.repeat(2400),
  punctuation: repeated('!?.,;:-=+*/#@$%^&()[]{}<>|~`"\'', 2400),
  'runs of one character': `${'a'.repeat(800)} ${'='.repeat(800)} ${'-'.repeat(798)}`,
  'hex dump': hexWords.join(' ').slice(0, 2400),
  base64: Buffer.from(Array.from({ length: 3000 }, (_, i) => (i * 7919 + 13) % 256))
    .toString('base64')
    .slice(0, 2400),
  'zero-padded numbers': Array.from({ length: 300 }, (_, i) => String(i).padStart(8, '0'))
    .join(',')
    .slice(0, 2400),
  emoji: repeated('😀🎉🚀 Great job team! 🙌🔥 Let us celebrate 🍕🍺🎂 ', 2400),
};
