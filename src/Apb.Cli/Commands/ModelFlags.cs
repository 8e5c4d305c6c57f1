using System.CommandLine;

namespace Apb.Cli.Commands;

/// <summary>
/// The model folder, as `--model DIR` / `-m DIR` or as the first argument (`apb serve DIR`, as vLLM and llama.cpp take it).
/// Given both ways, they must agree.
/// </summary>
sealed class ModelFlags
{
    readonly Option<string?> _option = CommonOptions.Model();
    readonly Argument<string?> _argument = new("MODEL")
    {
        Description = "the model folder (the same as --model)", Arity = ArgumentArity.ZeroOrOne,
    };

    public void AddTo(Command cmd)
    {
        cmd.Options.Add(_option);
        cmd.Arguments.Add(_argument);
    }

    /// <summary>The folder given, or null (the embedded default).</summary>
    public string? Get(ParseResult r)
    {
        string? option = r.GetValue(_option), argument = r.GetValue(_argument);
        if (option != null && argument != null && option != argument)
            throw new ApbException($"two models given: --model {option} and the argument {argument}; give one");
        if (argument != null && ParseErrors.UnknownOption(r, argument) is { } unknown) throw new ApbException(unknown);
        string? dir = option ?? argument;
        if (argument != null && option == null && !Directory.Exists(argument))
        {
            // A word that is not a folder here is most often a value whose option was misspelt or dropped.
            string hint = r.Tokens.Any(t => t.Value == "-q") ? " (-q is --quiet; a question goes in --query)" : "";
            throw new ApbException($"the model folder '{argument}' does not exist{hint}: the first argument is a model folder (as --model DIR); " +
                "check the spelling of the option before it");
        }
        return dir;
    }
}
