using Apb.Strategies;

namespace Apb.Runtime;

/// <summary>
/// What a group's leader asks of every rank. In a group of threads the leader hands the same command to each rank's
/// thread; in a group of processes it sends the command's bytes over the control channel first (<see cref="Encode"/>),
/// so every rank runs the same code on the same inputs and makes the same collectives in the same order.
/// </summary>
abstract record GroupCommand
{
    /// <summary>Context then query through the plan's strategy; the sequence keeps its caches for decoding.</summary>
    public sealed record Prefill(int Sequence, int[] Context, int[] Query, PrefillPlan Plan, int DecodeBudget, bool AllLogits,
        bool Cancellable, bool Timings) : GroupCommand;

    /// <summary>More prompt tokens for a sequence of full attention (chunked prefill); logits of the last when asked.</summary>
    public sealed record Extend(int Sequence, int[] Tokens, bool Logits) : GroupCommand;

    /// <summary>
    /// One new token for each sequence, in one batched step. Greedy: rank 0 answers with each sequence's argmax (as exact
    /// floats) instead of its logits, picked on the device.
    /// </summary>
    public sealed record Decode(int[] Sequences, int[] Tokens, bool Greedy = false) : GroupCommand;

    /// <summary>Forget these sequences and give their memory back.</summary>
    public sealed record Release(int[] Sequences) : GroupCommand;

    /// <summary>Every rank's profiles and memory for one sequence, gathered to rank 0 (<see cref="RankReport"/>).</summary>
    public sealed record Report(int Sequence) : GroupCommand;

    /// <summary>Every rank's <see cref="Backends.MemoryStats"/>, gathered to rank 0; optionally starting a new peak first.</summary>
    public sealed record Memory(bool ResetPeak) : GroupCommand;

    /// <summary>The leader is done: followers leave their loop.</summary>
    public sealed record Shutdown : GroupCommand;

    const byte PrefillTag = 1, DecodeTag = 2, ReleaseTag = 3, ShutdownTag = 4, ReportTag = 5, MemoryTag = 6, ExtendTag = 7;

    public static byte[] Encode(GroupCommand c)
    {
        using var ms = new MemoryStream();
        using var w = new BinaryWriter(ms);
        switch (c)
        {
            case Prefill p:
                w.Write(PrefillTag);
                w.Write(p.Sequence);
                Ints(w, p.Context); Ints(w, p.Query);
                var plan = p.Plan.Plan;
                w.Write((int)p.Plan.Strategy); w.Write(p.Plan.Ranks); w.Write(plan is not null);
                if (plan is not null)
                {
                    w.Write(plan.ContextLength); w.Write(plan.AnchorLength); w.Write(plan.PassingLength);
                    w.Write(plan.QueryLength); w.Write(plan.AnchorInsertAt); w.Write(plan.PassingBudget);
                }
                w.Write(p.Plan.Note ?? ""); w.Write((int)p.Plan.Scorer);
                w.Write(p.Plan.NoveltyWeight.HasValue); w.Write(p.Plan.NoveltyWeight ?? 0f); w.Write(p.Plan.PassingFromLayer);
                w.Write(p.DecodeBudget); w.Write(p.AllLogits); w.Write(p.Cancellable); w.Write(p.Timings);
                break;
            case Decode d:
                w.Write(DecodeTag);
                Ints(w, d.Sequences); Ints(w, d.Tokens); w.Write(d.Greedy);
                break;
            case Release r:
                w.Write(ReleaseTag);
                Ints(w, r.Sequences);
                break;
            case Extend e:
                w.Write(ExtendTag);
                w.Write(e.Sequence); Ints(w, e.Tokens); w.Write(e.Logits);
                break;
            case Memory m:
                w.Write(MemoryTag);
                w.Write(m.ResetPeak);
                break;
            case Report rp:
                w.Write(ReportTag);
                w.Write(rp.Sequence);
                break;
            case Shutdown:
                w.Write(ShutdownTag);
                break;
            default: throw new ArgumentException($"no encoding for {c.GetType().Name}");
        }
        w.Flush();
        return ms.ToArray();
    }

    public static GroupCommand Parse(byte[] bytes)
    {
        using var r = new BinaryReader(new MemoryStream(bytes));
        byte tag = r.ReadByte();
        switch (tag)
        {
            case PrefillTag:
            {
                int seq = r.ReadInt32();
                var context = Ints(r); var query = Ints(r);
                var kind = (StrategyKind)r.ReadInt32();
                int ranks = r.ReadInt32();
                SequencePlan? plan = null;
                if (r.ReadBoolean())
                {
                    int n = r.ReadInt32(), anchor = r.ReadInt32(), passing = r.ReadInt32(), q = r.ReadInt32(), at = r.ReadInt32(), budget = r.ReadInt32();
                    plan = SequencePlanner.Rebuild(kind, n, ranks, anchor, passing, q, at, budget);
                }
                string note = r.ReadString();
                var scorer = (ScorerKind)r.ReadInt32();
                bool weighted = r.ReadBoolean();
                float weight = r.ReadSingle();
                int passingFrom = r.ReadInt32();
                var p = new PrefillPlan(kind, ranks, plan, note.Length == 0 ? null : note, scorer, weighted ? weight : null, passingFrom);
                return new Prefill(seq, context, query, p, r.ReadInt32(), r.ReadBoolean(), r.ReadBoolean(), r.ReadBoolean());
            }
            case DecodeTag: return new Decode(Ints(r), Ints(r), r.ReadBoolean());
            case ReleaseTag: return new Release(Ints(r));
            case ReportTag: return new Report(r.ReadInt32());
            case MemoryTag: return new Memory(r.ReadBoolean());
            case ExtendTag: return new Extend(r.ReadInt32(), Ints(r), r.ReadBoolean());
            case ShutdownTag: return new Shutdown();
            default: throw new ApbException($"the group's leader sent an unknown command (tag {tag}): are all ranks the same apb version?");
        }
    }

    static void Ints(BinaryWriter w, int[] xs)
    {
        w.Write(xs.Length);
        foreach (int x in xs) w.Write(x);
    }

    static int[] Ints(BinaryReader r)
    {
        int n = r.ReadInt32();
        if (n < 0) throw new ApbException($"the group's leader sent a list of {n} entries: the control stream is corrupt");
        var xs = new int[n];
        for (int i = 0; i < n; i++) xs[i] = r.ReadInt32();
        return xs;
    }
}
