using System.Text;

namespace Apb.Tokenization;

/// <summary>
/// Unicode canonical composition (NFC), for tokenizers whose normalizer asks for it (Qwen). Our own because the product
/// runs with InvariantGlobalization, where <see cref="string.Normalize()"/> returns non-ASCII text unchanged.
/// Data: <c>NfcTables.cs</c> (Unicode 14; HF's Rust normalizer carries an older table, which only matters for scripts
/// encoded since).
/// </summary>
internal static partial class Nfc
{
    private const int SBase = 0xAC00, LBase = 0x1100, VBase = 0x1161, TBase = 0x11A7;
    private const int LCount = 19, VCount = 21, TCount = 28, NCount = VCount * TCount, SCount = LCount * NCount;

    private static readonly byte[] s_bmpClass = new byte[0x10000];
    private static readonly int[] s_astralClassRanges;
    private static readonly Dictionary<int, (int First, int Second)> s_decompositions = new();
    private static readonly Dictionary<long, int> s_compositions = new();
    // Code points that can make a string non-NFC: a non-zero combining class, a decomposition NFC does not keep,
    // or being the second half of a composition (NFC_Quick_Check No or Maybe). Text free of them is already NFC.
    private static readonly HashSet<int> s_astralUnstable = new();
    private static readonly ulong[] s_bmpUnstable = new ulong[0x10000 / 64];

    static Nfc()
    {
        var astral = new List<int>();
        var ranges = CombiningClassRanges;
        for (int i = 0; i < ranges.Length; i += 3)
        {
            for (int cp = ranges[i]; cp <= ranges[i + 1]; cp++)
            {
                if (cp < 0x10000) { s_bmpClass[cp] = (byte)ranges[i + 2]; MarkUnstable(cp); }
                else s_astralUnstable.Add(cp);
            }
            if (ranges[i] >= 0x10000) astral.AddRange([ranges[i], ranges[i + 1], ranges[i + 2]]);
        }
        s_astralClassRanges = astral.ToArray();

        var excluded = new HashSet<int>();
        foreach (int cp in CompositionExclusions) excluded.Add(cp);
        var decompositions = Decompositions;
        for (int i = 0; i < decompositions.Length; i += 3)
        {
            int cp = decompositions[i], first = decompositions[i + 1], second = decompositions[i + 2];
            s_decompositions[cp] = (first, second);
            if (second != 0 && !excluded.Contains(cp))
            {
                s_compositions[Key(first, second)] = cp;
                MarkUnstable(second);
            }
            else MarkUnstable(cp);
        }
        for (int cp = VBase; cp < VBase + VCount; cp++) MarkUnstable(cp);
        for (int cp = TBase + 1; cp < TBase + TCount; cp++) MarkUnstable(cp);
    }

    private static void MarkUnstable(int cp)
    {
        if (cp < 0x10000) s_bmpUnstable[cp >> 6] |= 1UL << (cp & 63);
        else s_astralUnstable.Add(cp);
    }

    private static long Key(int first, int second) => ((long)first << 21) | (uint)second;

    internal static int CombiningClass(int cp)
    {
        if (cp < 0x10000) return s_bmpClass[cp];
        int lo = 0, hi = s_astralClassRanges.Length / 3 - 1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >> 1, start = s_astralClassRanges[mid * 3], end = s_astralClassRanges[mid * 3 + 1];
            if (cp < start) hi = mid - 1;
            else if (cp > end) lo = mid + 1;
            else return s_astralClassRanges[mid * 3 + 2];
        }
        return 0;
    }

    private static bool IsUnstable(int cp) =>
        cp < 0x10000 ? (s_bmpUnstable[cp >> 6] & (1UL << (cp & 63))) != 0 : s_astralUnstable.Contains(cp);

    private static int CodePointAt(string text, int i, out int length)
    {
        if (char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
        {
            length = 2;
            return char.ConvertToUtf32(text[i], text[i + 1]);
        }
        length = 1;
        return text[i];
    }

    /// <summary>
    /// NFC of <paramref name="text"/>; the same instance when nothing changes. Only the stretches around unstable
    /// code points are rebuilt: from the last starter before one to the next stable character after it (a stable
    /// character never combines with what precedes it, so the stretches are independent).
    /// </summary>
    public static string Normalize(string text)
    {
        StringBuilder? sb = null;
        int copied = 0, i = 0;
        while (i < text.Length)
        {
            if (text[i] < 0x300) { i++; continue; }
            int cp = CodePointAt(text, i, out int len);
            if (!IsUnstable(cp)) { i += len; continue; }

            int start = i;
            while (start > copied && CombiningClass(CodePointBefore(text, start, out int backLen)) != 0) start -= backLen;
            if (start > copied)
            {
                CodePointBefore(text, start, out int starterLength);
                start -= starterLength;
            }
            int end = i + len;
            while (end < text.Length)
            {
                int next = CodePointAt(text, end, out int nextLen);
                if (!IsUnstable(next)) break;
                end += nextLen;
            }
            sb ??= new StringBuilder(text.Length + 16);
            sb.Append(text, copied, start - copied);
            Compose(Decompose(text, start, end), sb);
            copied = i = end;
        }
        if (sb is null) return text;
        sb.Append(text, copied, text.Length - copied);
        string result = sb.ToString();
        return result == text ? text : result;
    }

    private static int CodePointBefore(string text, int i, out int length)
    {
        if (char.IsLowSurrogate(text[i - 1]) && i >= 2 && char.IsHighSurrogate(text[i - 2]))
        {
            length = 2;
            return char.ConvertToUtf32(text[i - 2], text[i - 1]);
        }
        length = 1;
        return text[i - 1];
    }

    private static List<int> Decompose(string text, int start, int end)
    {
        var cps = new List<int>(end - start + 8);
        for (int i = start; i < end;)
        {
            AppendDecomposed(cps, CodePointAt(text, i, out int len));
            i += len;
        }
        // Canonical ordering: stable insertion sort of each run of non-starters by combining class.
        for (int i = 1; i < cps.Count; i++)
        {
            int cc = CombiningClass(cps[i]);
            if (cc == 0) continue;
            int j = i;
            while (j > 0 && CombiningClass(cps[j - 1]) > cc)
            {
                (cps[j - 1], cps[j]) = (cps[j], cps[j - 1]);
                j--;
            }
        }
        return cps;
    }

    private static void AppendDecomposed(List<int> cps, int cp)
    {
        int s = cp - SBase;
        if ((uint)s < SCount)
        {
            cps.Add(LBase + s / NCount);
            cps.Add(VBase + s % NCount / TCount);
            if (s % TCount != 0) cps.Add(TBase + s % TCount);
            return;
        }
        if (s_decompositions.TryGetValue(cp, out var d))
        {
            AppendDecomposed(cps, d.First);
            if (d.Second != 0) AppendDecomposed(cps, d.Second);
            return;
        }
        cps.Add(cp);
    }

    private static void Compose(List<int> cps, StringBuilder sb)
    {
        var output = new List<int>(cps.Count);
        int starterIndex = -1, lastClass = 0;
        foreach (int cp in cps)
        {
            int cc = CombiningClass(cp);
            // Composable when nothing between the starter and cp blocks it: either cp is adjacent to the starter
            // (lastClass 0) or every character in between has a lower class.
            if (starterIndex >= 0 && (lastClass == 0 ? starterIndex == output.Count - 1 : lastClass < cc)
                && TryCompose(output[starterIndex], cp, out int composite))
            {
                output[starterIndex] = composite;
                continue;
            }
            if (cc == 0) starterIndex = output.Count;
            lastClass = cc;
            output.Add(cp);
        }
        foreach (int cp in output)
        {
            if (cp < 0x10000) sb.Append((char)cp);
            else sb.Append(char.ConvertFromUtf32(cp));
        }
    }

    private static bool TryCompose(int first, int second, out int composite)
    {
        int l = first - LBase, v = second - VBase;
        if ((uint)l < LCount && (uint)v < VCount)
        {
            composite = SBase + (l * VCount + v) * TCount;
            return true;
        }
        int s = first - SBase, t = second - TBase;
        if ((uint)s < SCount && s % TCount == 0 && t > 0 && t < TCount)
        {
            composite = first + t;
            return true;
        }
        return s_compositions.TryGetValue(Key(first, second), out composite);
    }
}
