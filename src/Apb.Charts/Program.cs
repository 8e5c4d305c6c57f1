return Apb.Charts.ChartsCli.Run(args, Console.Out, Console.Error);
